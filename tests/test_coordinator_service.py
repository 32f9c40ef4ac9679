"""The coordinator over a real Mosquitto: devices see replies, events and retained state."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator.service import ADVICE_EVERY_S
from hallq import messages as m
from hallq.errors import RequestTimeout
from hallq.topics import HallTopics

from .conftest import Inbox, Mosquitto, until
from .coordinated import FakeClock, device, running
from .halls import UNPACED, at, small_hall, small_hall_text, two_site_hall_text

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


async def test_a_dispenser_and_a_pad_see_what_mqtt_topics_md_promises(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    calls, window1, board = inbox(), inbox(), inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
    ):
        await pad.subscribe(T.event("call"), calls)
        await pad.subscribe(T.window_state(1), window1)
        await pad.subscribe(T.board_state(), board)
        await dispenser.wait_connected(10)
        await pad.wait_connected(10)
        await window1.wait_for(lambda ps: bool(ps))  # retained state published at start

        first = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
        )
        second = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
        )
        assert first.ok
        assert first.ticket.number == "A001"
        assert first.ticket.people_ahead == 0
        assert second.ticket.number == "A002"
        assert second.ticket.people_ahead == 1

        clock.now += 120
        reply = await pad.request(
            T.cmd("window", "pi-w1"), m.WindowAction(window=1, action="call"), timeout=10
        )
        assert reply.ok
        assert reply.ticket == "A001"
        call = (await calls.wait_for(lambda ps: bool(ps)))[0]
        assert (call.ticket, call.window, call.zone, call.recall) == ("A001", 1, "hall-1", 0)
        state = await window1.wait_for(lambda ps: ps[-1].ticket == "A001")
        assert state[-1].status == "open"
        assert state[-1].service == "tax-filing"
        shown = await board.wait_for(lambda ps: bool(ps[-1].calls))
        assert shown[-1].calls[0].ticket == "A001"
        assert shown[-1].waiting["tax-filing"] == 1

        refused = await pad.request(
            T.cmd("window", "pi-w1"), m.WindowAction(window=3, action="call"), timeout=10
        )
        assert not refused.ok
        assert refused.error.code == "not_your_window"
        assert [p.ticket for p in calls.payloads] == ["A001"]


async def test_a_restarted_coordinator_republishes_state_and_keeps_numbering(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    log_path = tmp_path / "log.sqlite"
    async with (
        running(cfg, log_path, clock),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.wait_connected(10)
        for _ in range(3):
            await dispenser.request(
                T.req("pi-d1"), m.IssueRequest(kind="issue", service="invoice"), timeout=10
            )
    mosquitto.restart()  # forget retained messages: the coordinator must publish them again
    queue = inbox()
    async with (
        running(cfg, log_path, clock),
        device(cfg, "board", "board-1", tmp_path) as board,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await board.subscribe(T.queue_state("invoice"), queue)
        state = await queue.wait_for(lambda ps: bool(ps))
        assert state[-1].waiting == 3
        assert state[-1].next == ["B001", "B002", "B003"]
        await dispenser.wait_connected(10)  # a request is never queued offline
        reply = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="invoice"), timeout=10
        )
        assert reply.ticket.number == "B004"


async def test_sigkill_while_issuing_loses_no_acknowledged_ticket(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = tmp_path / "hall.toml"
    config.write_text(
        small_hall_text(
            mosquitto.url, str(tmp_path / "state"), security=UNPACED, all_day=True, http_port=0
        )
    )
    log_path = tmp_path / "log.sqlite"
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), security=UNPACED, all_day=True)

    def start() -> subprocess.Popen[bytes]:
        with (tmp_path / "coordinator.log").open("ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hallqctl.cli",
                    "coordinator",
                    "--config",
                    str(config),
                    "--log",
                    str(log_path),
                    "--dispatch",
                    "pure",
                ],
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    acked: list[str] = []
    proc = start()
    try:
        async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
            await dispenser.wait_connected(10)
            killed = False
            while len(acked) < 40:
                request = m.IssueRequest(kind="issue", service="tax-filing")
                for _ in range(60):  # a device retries with the same id until it gets a reply
                    try:
                        reply = await dispenser.request(T.req("pi-d1"), request, timeout=0.5)
                    except RequestTimeout:
                        continue
                    # a copy that outlived its 0.5 s is refused, not applied: send it again
                    if reply.ok or reply.error.code != "expired":
                        break
                else:
                    pytest.fail(f"no reply after the restart; log: {tmp_path}/coordinator.log")
                assert reply.ok, reply
                acked.append(reply.ticket.number)
                if len(acked) == 15 and not killed:
                    # the next requests stream in while the coordinator dies
                    burst = [m.IssueRequest(kind="issue", service="tax-filing") for _ in range(5)]
                    for b in burst:
                        await dispenser.publish(T.req("pi-d1"), b)
                    proc.kill()
                    proc.wait(10)
                    killed = True
                    proc = start()
    finally:
        proc.terminate()
        proc.wait(10)
    with sqlite3.connect(log_path) as db:
        logged = [
            row[0]
            for row in db.execute(
                "SELECT json_extract(result, '$.info.number') FROM entries "
                "WHERE kind = 'ticket' AND json_extract(result, '$.ok')"
            )
        ]
    assert len(logged) == len(set(logged)), "a number was issued twice"
    assert set(acked) <= set(logged), "an acknowledged ticket is missing from the log"
    assert len(acked) == len(set(acked)) == 40


@pytest.mark.parametrize("synthetic", [True, False])
def test_boards_carry_the_comfort_level_only_from_a_real_or_allowed_history(
    tmp_path: Path, synthetic: bool
) -> None:
    from coordinator.service import Coordinator

    cfg = small_hall(comfort_synthetic=synthetic)
    coordinator = Coordinator(
        cfg, log_path=tmp_path / "log.sqlite", dispatch="pure", clock=FakeClock()
    )
    coordinator.forecast = coordinator._forecast()  # built in a worker once serving
    try:
        comfort = coordinator.board_state(1).comfort
    finally:
        coordinator.close()
    if synthetic:
        assert comfort in ("较少", "适中", "较多")
    else:
        assert comfort is None, "a two-day-old log must not put a made-up level on the boards"


async def test_a_duplicate_publishes_nothing_and_calls_on_are_announced_at_each_start(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """A repeated CALL gets the first reply and nothing else goes out; the calls still on
    are announced again when the coordinator (re)connects, so a call logged by a
    coordinator that died before publishing it is still heard."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    calls, tickets = inbox(), inbox()
    log_path = tmp_path / "log.sqlite"
    async with device(cfg, "board", "ear", tmp_path) as ear:
        await ear.subscribe(T.event("call"), calls)
        await ear.subscribe(T.event("ticket"), tickets)
        await ear.wait_connected(10)
        async with running(cfg, log_path, clock) as coordinator:
            for _ in range(2):
                await coordinator.execute(
                    "ticket",
                    "dispenser",
                    "pi-d1",
                    m.IssueRequest(kind="issue", service="tax-filing"),
                )
            call = m.WindowAction(window=1, action="call")
            first = await coordinator.execute("window", "window", "pi-w1", call)
            again = await coordinator.execute("window", "window", "pi-w1", call)
            assert not first.duplicate
            assert again.duplicate
            assert again.record == first.record
            await coordinator.execute(
                "window", "window", "pi-w1", m.WindowAction(window=1, action="recall")
            )
            heard = await calls.wait_for(lambda ps: len(ps) == 2)
            assert [(c.ticket, c.recall) for c in heard] == [("A001", 0), ("A001", 1)], (
                "the duplicate CALL was announced again"
            )
        async with running(cfg, log_path, clock):
            heard = await calls.wait_for(lambda ps: len(ps) == 3)
        assert (heard[-1].ticket, heard[-1].window) == ("A001", 1)
        assert [e.state.value for e in tickets.payloads] == ["waiting", "waiting", "called"], (
            "a duplicate published a ticket event"
        )


async def test_the_comfort_index_is_published_retained_for_the_month_ahead(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """What the WeChat publisher and the dashboard read: the next 30 days by hour, from
    today, agreeing with the level the boards show, and there for a late subscriber."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), comfort_synthetic=True)
    clock = FakeClock()
    comfort, board = inbox(), inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "board", "pi-b1", tmp_path) as late,
    ):
        await late.subscribe(T.comfort_state(), comfort)
        await late.subscribe(T.board_state(), board)
        state = (await comfort.wait_for(lambda ps: bool(ps)))[-1]
        # built in a worker after start: the boards carry it from their next change on
        await coordinator.execute(
            "ticket", "dispenser", "pi-d1", m.IssueRequest(kind="issue", service="tax-filing")
        )
        shown = (await board.wait_for(lambda ps: ps[-1].comfort is not None))[-1]
        today = cfg.hall.business_day(clock.now)
        assert state.days[0].day == today
        assert len(state.days) == 30
        assert shown.comfort == state.days[0].level
        assert state.quiet_below_per_hour < state.busy_from_per_hour
        week = state.days[:7]
        assert any(not d.open for d in week)
        assert any(d.open for d in week)
        for d in state.days:
            if d.open:
                assert d.first_hour == 8
                assert len(d.hours) == len(d.expected) == 10
                assert sum(d.expected) > 0
            else:
                assert d.hours == []
                assert d.level == "较少"
        assert coordinator.forecast.comfort_state(1, today).days == state.days


async def test_the_comfort_index_moves_on_with_the_day(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """At the day's rollover the index is rebuilt (off the event loop) and republished from
    the new day, whichever path noticed the new day first -- here a dispenser's request."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), comfort_synthetic=True)
    clock = FakeClock()
    comfort = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.subscribe(T.comfort_state(), comfort)
        await dispenser.wait_connected(10)
        first = (await comfort.wait_for(lambda ps: bool(ps)))[-1]
        clock.now = at(9, day=31)
        reply = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
        )
        assert reply.ok
        assert reply.ticket.number == "A001"
        moved = (
            await comfort.wait_for(lambda ps: ps[-1].days[0].day > first.days[0].day, timeout=20)
        )[-1]
    assert moved.rev > first.rev
    assert moved.days[0].day == first.days[1].day == coordinator.engine.day


async def test_the_dashboard_serves_the_comfort_heat_map(tmp_path: Path) -> None:
    import aiohttp

    from coordinator.service import Coordinator
    from coordinator.web.server import start_web

    coordinator = Coordinator(
        small_hall(comfort_synthetic=True),
        log_path=tmp_path / "l.sqlite",
        dispatch="pure",
        clock=FakeClock(),
    )
    coordinator.forecast = coordinator._forecast()
    web = await start_web(coordinator, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{web.url}/api/comfort.png") as r:
            assert r.status == 200
            assert (await r.read())[:8] == b"\x89PNG\r\n\x1a\n"
        async with aiohttp.ClientSession() as http, http.get(f"{web.url}/api/comfort") as r:
            assert r.status == 200
            data = m.decode(m.ComfortState, await r.read())
        today = coordinator.cfg.hall.business_day(coordinator.clock())
        assert data.days == coordinator.forecast.comfort_state(0, today).days
        assert data.days[0].day == today
        assert len(data.days) == 30
        coordinator.forecast = None
        for path in ("/api/comfort.png", "/api/comfort"):
            async with aiohttp.ClientSession() as http, http.get(web.url + path) as r:
                assert r.status == 404
    finally:
        await web.stop()
        coordinator.close()


async def test_a_queue_past_its_target_raises_express_window_advice(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), security=UNPACED)
    alerts = inbox()
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "supervisor", "desk", tmp_path) as desk,
    ):
        await desk.subscribe(desk.topics.event("alert"), alerts)
        await dispenser.wait_connected(10)
        await desk.wait_connected(10)
        # 50 waiting: one more window saves ~6 of 18 minutes, over the advice's bar
        for _ in range(50):
            await dispenser.request(
                dispenser.topics.req("pi-d1"),
                m.IssueRequest(kind="issue", service="tax-filing"),
                timeout=10,
            )
        # the queue is checked once a hall minute: the next check sees all 50, however
        # long they took to arrive on a loaded machine
        clock.now += ADVICE_EVERY_S
        found = await alerts.wait_for(
            lambda ps: any(p.kind == "express_advice" for p in ps), timeout=15
        )
    advice = next(p for p in found if p.kind == "express_advice")
    assert advice.window == 2, "window 2 serves only invoices: the one free to help"
    assert "申报纳税" in advice.message or "tax-filing" in advice.message
    assert advice.message.endswith("(simulation)"), "the effect comes from a short simulation"


async def test_queues_are_republished_with_simulated_wait_ranges(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """After tickets are issued, the coordinator plays the hall forward off its event loop
    and republishes the queue with the simulated range; the issue reply carries a range."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    queue = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "board", "board-1", tmp_path) as board,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await board.subscribe(T.queue_state("tax-filing"), queue)
        await dispenser.wait_connected(10)
        for w in (1, 4):  # one window serving tax-filing alone: a queue forms
            await coordinator.execute(
                "window",
                "supervisor",
                "desk",
                m.WindowAction(window=w, action="close"),
                reply=False,
            )
        replies = [
            await dispenser.request(
                T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
            )
            for _ in range(6)
        ]
        assert all(r.ticket.wait is not None for r in replies)
        state = await queue.wait_for(
            lambda ps: ps[-1].wait is not None and ps[-1].wait.basis == "simulation"
        )
        last = state[-1]
        assert last.waiting == 6
        assert last.eta_min == last.wait.p50_min > 0
        assert last.wait.low_min <= last.wait.p50_min <= last.wait.high_min
        assert coordinator.eta is not None
        assert coordinator.eta.refreshes >= 1

        # a window paused: the estimates are played again at the next tick, whatever the
        # budget says (a break's first minute read "within 1 min" with 17 waiting)
        eta = coordinator.eta
        await until(lambda: coordinator._eta_task is None or coordinator._eta_task.done())
        eta._last_cost = 1e6  # the budget would put the next refresh off for hours
        done = eta.refreshes
        await coordinator.execute(
            "window", "supervisor", "desk", m.WindowAction(window=3, action="pause"), reply=False
        )
        await until(lambda: eta.refreshes > done, 10)


async def test_a_lone_command_commits_on_the_loop_only_while_the_disk_is_quick(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One command at a time: committed on the loop (no hand-off to the writer thread)
    while the log's writes take under QUIET_COMMIT_S; once they take longer (a slow disk),
    in the writer thread, so the loop never waits for the fsync. Durable before its reply
    either way."""
    from coordinator import service
    from coordinator.eventlog import EventLog

    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    log_path = tmp_path / "log.sqlite"
    async with (
        running(cfg, log_path, FakeClock()) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        where: list[str] = []
        log = coordinator.eventlog
        commit, commit_off_loop = log.commit, log.commit_off_loop

        def on_loop() -> int:
            where.append("loop")
            return commit()

        async def off_loop() -> int:
            where.append("thread")
            return await commit_off_loop()

        log.commit = on_loop  # type: ignore[method-assign]
        log.commit_off_loop = off_loop  # type: ignore[method-assign]
        await dispenser.wait_connected(10)
        reader = EventLog.reader(log_path)
        # this machine's disk may itself be slow: the bound is set around the figure
        for bound, expected in ((60.0, "loop"), (0.0, "thread"), (60.0, "loop")):
            monkeypatch.setattr(service, "QUIET_COMMIT_S", bound)
            log.write_s = 1.0
            where.clear()
            request = m.IssueRequest(kind="issue", service="tax-filing")
            reply = await dispenser.request(T.req("pi-d1"), request, timeout=10)
            assert reply.ok, reply.error
            assert reader.lookup(request.id) is not None, "answered before it was durable"
            assert where, "its group was committed somewhere"
            assert set(where) == {expected}, (bound, where)
        reader.close()


async def test_a_quiet_hall_checkpoints_its_wal_between_groups_and_a_slow_disk_leaves_it_to_sqlite(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WAL is checkpointed after a quiet group's messages left, every
    WAL_CHECKPOINT_COMMITS commits, not by SQLite inside the commit that crosses its mark;
    groups committed in the writer thread (a slow disk, a busy hall) leave it to SQLite's,
    there, so the loop never waits for a slow disk's checkpoint."""
    from coordinator import eventlog, service

    monkeypatch.setattr(eventlog, "WAL_CHECKPOINT_COMMITS", 3)
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        log = coordinator.eventlog
        checkpoint_wal, ran = log.checkpoint_wal, []

        def recorded() -> bool:
            done = checkpoint_wal()
            ran.append(done)
            return done

        log.checkpoint_wal = recorded  # type: ignore[method-assign]
        await dispenser.wait_connected(10)
        for bound, quick in ((60.0, True), (0.0, False)):
            monkeypatch.setattr(service, "QUIET_COMMIT_S", bound)
            log.write_s = 1.0
            ran.clear()
            for _ in range(7):
                request = m.IssueRequest(kind="issue", service="tax-filing")
                reply = await dispenser.request(T.req("pi-d1"), request, timeout=10)
                assert reply.ok, reply.error
            # 7 commits, one every 3: at least 2, whatever the count before
            assert sum(ran) >= 2 if quick else not any(ran), (bound, ran)


async def test_commands_arriving_together_share_one_commit_and_are_answered_once_durable(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Group commit: requests in flight together are logged with fewer commits than
    requests, and none is answered before the log holds it (read from another connection
    the moment its reply arrives)."""
    import asyncio

    from coordinator.eventlog import EventLog

    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), security=UNPACED)
    log_path = tmp_path / "log.sqlite"
    async with (
        running(cfg, log_path, FakeClock()) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        commits: list[int] = []  # on the loop (a lone command) or in the writer thread
        commit, commit_off_loop = coordinator.eventlog.commit, coordinator.eventlog.commit_off_loop

        def counted() -> int:
            kept = commit()
            commits.append(kept)
            return kept

        async def counted_off_loop() -> int:
            kept = await commit_off_loop()
            commits.append(kept)
            return kept

        coordinator.eventlog.commit = counted  # type: ignore[method-assign]
        coordinator.eventlog.commit_off_loop = counted_off_loop  # type: ignore[method-assign]
        await dispenser.wait_connected(10)
        reader = EventLog.reader(log_path)

        async def ask() -> bool:
            request = m.IssueRequest(kind="issue", service="tax-filing")
            reply = await dispenser.request(T.req("pi-d1"), request, timeout=10)
            assert reply.ok, reply.error
            return reader.lookup(request.id) is not None

        durable = await asyncio.gather(*(ask() for _ in range(30)))
        reader.close()
    assert all(durable), "a reply left before its command was in the log"
    assert sum(commits) >= 30
    assert len([k for k in commits if k]) < 30, "every command had a commit of its own"


async def test_kpis_reach_supervisors_every_second_of_a_burst(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inbox: type[Inbox]
) -> None:
    """The KPIs show only what the log holds, so the per-second tick publishes them only
    with nothing staged; in a burst the log is in the middle of a group at almost every
    tick, and they went unpublished for seconds. Here the tick never finds the log between
    groups (as in a burst), and they still come about every second, from the group
    commits, as the tickets are issued."""
    from coordinator.service import Coordinator

    async def tick_mid_group(self: Coordinator) -> None:
        return None

    monkeypatch.setattr(Coordinator, "_tick", tick_mid_group)
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), security=UNPACED)
    stats = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.subscribe(T.stats_state(), stats)
        await dispenser.wait_connected(10)
        await stats.wait_for(lambda ps: bool(ps))  # retained, published at the start
        at_start = len(stats.payloads)

        async def burst() -> None:  # paced under the hall's per-client limit (20/s)
            while True:
                await _issue_tickets(dispenser, 1)
                await asyncio.sleep(0.1)

        issuing = asyncio.create_task(burst())
        try:
            shown = await stats.wait_for(lambda ps: len(ps) >= at_start + 3, timeout=20)
        finally:
            issuing.cancel()
    issued = [s.total.issued for s in shown[at_start:]]
    assert issued == sorted(issued)
    assert issued[0] >= 1
    assert issued[-1] > issued[0]


def _record_checkpoint_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The coordinator's checkpoints forked from now on: their children's pids."""
    import coordinator.service as service
    from coordinator.snapshot import Forked, fork_bytes

    children: list[int] = []

    def forking(make: Any) -> Forked | None:
        child = fork_bytes(make)
        assert child is not None
        children.append(child.pid)
        return child

    monkeypatch.setattr(service, "fork_bytes", forking)
    return children


async def _issue_tickets(dispenser: Any, count: int) -> None:
    for _ in range(count):
        reply = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
        )
        assert reply.ok


async def test_a_burst_of_commands_makes_one_checkpoint_per_interval_not_one_per_few_entries(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint costs by the day's size (fork, pickling, the blob written beside the
    commits): in a burst, one every ``checkpoint_every`` entries was several a second and
    a quarter of the coordinator's throughput. Within CHECKPOINT_MIN_S of the last one,
    however many entries came, there is no other."""
    import coordinator.hallqueue as hallqueue
    import coordinator.service as service

    monkeypatch.setattr(hallqueue, "CHECKPOINT_EVERY", 5)
    monkeypatch.setattr(service, "CHECKPOINT_MIN_S", 3600.0)
    children = _record_checkpoint_forks(monkeypatch)
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), security=UNPACED)
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.wait_connected(10)
        await _issue_tickets(dispenser, 30)
        assert coordinator._checkpointing is not None
        assert await asyncio.wait_for(coordinator._checkpointing, 30)
        assert coordinator.queue.seq - coordinator._checkpoint_seq >= 20, "entries left over"
    assert len(children) == 1


async def test_a_closed_coordinator_stops_the_forecast_child_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day's first command starts the comfort forecast: simulated days in a forked
    child, at a low priority, that on a busy machine take minutes. A coordinator closed
    meanwhile tells it to stop, so whoever shuts its loop's executor down does not wait
    for those days (a loaded CI box's teardown waited out its 180 s timeout)."""
    import threading
    import time

    import coordinator.forecast.index as index
    from coordinator.service import Coordinator

    forked = threading.Event()

    def slow_forecast(*_: Any, run: Any, **__: Any) -> Any:
        forked.set()
        return run(lambda: time.sleep(120))

    monkeypatch.setattr(index, "build_forecast", slow_forecast)
    cfg = small_hall("mqtt://127.0.0.1:1", str(tmp_path / "state"))
    coordinator = Coordinator(cfg, log_path=tmp_path / "log.sqlite", clock=FakeClock())
    coordinator._refresh_forecast()
    assert coordinator._refreshing is not None
    await asyncio.to_thread(forked.wait, 30)
    started = time.monotonic()
    coordinator.close()
    await asyncio.wait_for(coordinator._refreshing, 30)
    assert coordinator.forecast is None
    assert time.monotonic() - started < 10


async def test_checkpoints_are_made_by_a_child_and_restore_what_replaying_builds(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``checkpoint_every`` entries the day is pickled by a forked child (the loop
    serves on meanwhile): what it stored restores the day exactly as a full replay does."""
    import coordinator.hallqueue as hallqueue
    from coordinator.dispatch import load_core
    from coordinator.eventlog import EventLog
    from coordinator.hallqueue import HallQueue

    from .test_hallqueue import _views

    monkeypatch.setattr(hallqueue, "CHECKPOINT_EVERY", 10)
    children = _record_checkpoint_forks(monkeypatch)
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), security=UNPACED)
    log_path, copy = tmp_path / "log.sqlite", tmp_path / "copy.sqlite"
    clock = FakeClock()
    async with (
        running(cfg, log_path, clock) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.wait_connected(10)
        await _issue_tickets(dispenser, 25)
        assert coordinator._checkpointing is not None
        assert await asyncio.wait_for(coordinator._checkpointing, 30)
        with sqlite3.connect(log_path) as live, sqlite3.connect(copy) as backup:
            live.backup(backup)  # before the clean stop adds a checkpoint of its own
    assert children, "no checkpoint was made in a child"
    with sqlite3.connect(copy) as db:
        (seq,) = db.execute("SELECT max(seq) FROM checkpoints").fetchone()
        (last,) = db.execute("SELECT max(seq) FROM entries").fetchone()
    assert 10 <= seq <= last
    core = load_core("pure")
    restored = HallQueue(cfg, EventLog(copy), core)
    assert restored.recover() == last - seq
    expected = _views(restored, clock.now)
    restored.log._db.execute("DELETE FROM checkpoints")
    restored.log.close()  # a log takes one writer at a time
    full = HallQueue(cfg, EventLog(copy), core)
    assert full.recover() >= 25
    assert _views(full, clock.now) == expected


async def test_a_branch_kiosk_s_ticket_is_never_called_to_the_main_building(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Over MQTT, as the agents send them: the engine's unit test passed while the demo
    called every one of the branch kiosk's 922 tickets to the main building, as the
    commands name their sender by client id and the site was read from "role/client"."""
    from hallq.config import parse_config

    cfg = parse_config(two_site_hall_text(mosquitto.url, str(tmp_path / "state")), "h.toml")
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        device(cfg, "dispenser", "pi-d2", tmp_path) as branch,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
    ):
        await branch.wait_connected(10)
        await pad.wait_connected(10)
        issue = m.IssueRequest(kind="issue", service="tax-filing")
        number = (await branch.request(T.req("pi-d2"), issue, timeout=10)).ticket.number
        assert coordinator.engine.by_number[number].site == coordinator.engine.site_idx["branch"]
        call = m.WindowAction(window=1, action="call")  # window 1 is in the main building
        called = await pad.request(T.cmd("window", "pi-w1"), call, timeout=10)
        assert called.error is not None
        assert called.error.code == "no_one_waiting", called
