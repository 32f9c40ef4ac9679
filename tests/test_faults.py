"""Faults without lies: a full or read-only disk, broker restarts and late commands, with a
real Mosquitto, the real coordinator and simulated devices on ptys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import hallq.sqlite
from coordinator.service import REPLY_MARGIN_S, Coordinator
from edge.dispenser import DispenserAgent
from edge.leases import LeaseBook
from hallq import messages as m
from hallq.bus import Session
from hallq.config import HallConfig, parse_config
from hallq.errors import RequestTimeout
from hallq.topics import HallTopics

from .conftest import Inbox, Mosquitto, until
from .coordinated import FakeClock, device, running
from .halls import small_hall, small_hall_text
from .test_edge_agents import agent

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


class Disk:
    """The file system as SQLite sees it (bench/faults.py makes it really read-only): once
    ``fail`` has been called, the coordinator's log and every connection opened since are
    read-only, until ``read_only`` is set back (the coordinator's probe then reopens)."""

    def __init__(self) -> None:
        self.read_only = False

    def fail(self, coordinator: Coordinator) -> None:
        self.read_only = True
        coordinator.eventlog._db.execute("PRAGMA query_only = 1")


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    from coordinator import eventlog

    disk = Disk()
    real_open = hallq.sqlite.open_db  # what coordinator.eventlog imported

    def open_db(path: Path, schema: str, **kw: Any) -> sqlite3.Connection:
        db = real_open(path, schema, **kw)
        if disk.read_only:
            db.execute("PRAGMA query_only = 1")
        return db

    monkeypatch.setattr(eventlog, "open_db", open_db)
    return disk


@contextlib.asynccontextmanager
async def waiting_ticket_and_pad(
    cfg: HallConfig, tmp_path: Path, replies: Inbox, clock: FakeClock | None = None
) -> AsyncIterator[tuple[Coordinator, Session, Session]]:
    """The coordinator with one ticket waiting, window 1's pad, and a watcher that hears
    the pad's replies (every reply, also those the pad no longer waits for)."""
    async with (
        running(cfg, tmp_path / "log.sqlite", clock or FakeClock()) as coordinator,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        device(cfg, "board", "watch", tmp_path) as watch,
    ):
        await coordinator.execute(
            "ticket", "dispenser", "pi-d1", m.IssueRequest(kind="issue", service="tax-filing")
        )
        await watch.subscribe(T.reply("window", "pi-w1"), replies)
        await watch.wait_connected(10)
        await pad.wait_connected(10)
        yield coordinator, pad, watch


@contextlib.asynccontextmanager
async def dispenser_agent(
    cfg: HallConfig, session: Session, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[DispenserAgent, LeaseBook]]:
    """pi-d1's dispenser on ``session``, started and connected, with its lease book."""
    leases = LeaseBook(tmp_path / "leases.sqlite")
    dispenser = DispenserAgent(cfg, cfg.agent("pi-d1"), session, leases, None, clock=clock)
    try:
        await dispenser.start()
        await session.wait_connected(10)
        yield dispenser, leases
    finally:
        await dispenser.close()
        leases.close()


async def test_a_closed_dispenser_starts_nothing_on_its_closed_lease_book(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent stopping closes its dispenser, then the lease book, while its session
    still runs: a (re)connect in between starts no replay and no top-up on the closed
    book (they logged "Cannot operate on a closed database" on every quick stop)."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    async with device(cfg, "dispenser", "pi-d1", tmp_path) as session:
        async with dispenser_agent(cfg, session, tmp_path, FakeClock()) as (dispenser, _):
            pass
        with caplog.at_level(logging.WARNING, logger="hallq"):
            await dispenser._on_connect()
            dispenser.deliver_replays()
            await dispenser.top_up_leases()
            await asyncio.sleep(0)  # a replay task, had one started, has run by now
        assert dispenser._replaying is None or dispenser._replaying.done()
        assert "closed database" not in caplog.text


async def test_a_coordinator_that_cannot_log_refuses_loudly_and_dispensers_issue_offline(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox], disk: Disk
) -> None:
    """The log turns read-only mid-day: a key press still prints a ticket (from the lease),
    supervisors get an alert, health turns red, nothing changes in memory; once the log
    takes writes again the refused requests come back from the broker and every printed
    number is in the queue exactly once."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    alerts, health = inbox(), inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "board", "watch", tmp_path) as watch,
        agent(cfg, "pi-d1", tmp_path, clock) as (devices, printers),
    ):
        await watch.subscribe(T.event("alert"), alerts)
        await watch.subscribe(T.health("coordinator", cfg.coordinator.client_id), health)
        await watch.wait_connected(10)
        keypad_bus, keypad = devices["keys-1"]
        printer = printers["printer-1"]
        await until(lambda: ("pi-d1", "invoice") in coordinator.engine.leases, timeout=15)
        keypad_bus.press(keypad, 2)
        await printer.wait_for(lambda: len(printer.tickets) == 1, timeout=15)

        disk.fail(coordinator)
        for _ in range(2):
            keypad_bus.press(keypad, 2)
        await printer.wait_for(lambda: len(printer.tickets) == 3, timeout=15)
        assert ["B001", "B950", "B951"] == [
            n for t in printer.tickets for n in ("B001", "B950", "B951") if n in t.text
        ]
        await alerts.wait_for(lambda ps: any(a.kind == "storage_failed" for a in ps))
        sick = await health.wait_for(lambda ps: any(not h.components[0].ok for h in ps))
        assert sick[-1].components[0].status == "storage_failed"
        assert "UNHEALTHY" in coordinator.status_line()
        assert [t.number for t in coordinator.engine.tickets] == ["B001"]

        disk.read_only = False  # the disk is back
        await alerts.wait_for(lambda ps: any(a.kind == "storage_recovered" for a in ps))
        await health.wait_for(lambda ps: ps[-1].components[0].ok)
        await until(lambda: {"B950", "B951"} <= set(coordinator.engine.by_number), timeout=20)
        waiting = [t.number for t in coordinator.engine.tickets if t.state is m.TicketState.WAITING]
        assert sorted(waiting) == ["B001", "B950", "B951"], "a number not printed waits"
        assert "UNHEALTHY" not in coordinator.status_line()


@pytest.mark.parametrize("how", ["restart", "sigkill"])
async def test_views_converge_after_the_broker_comes_back_empty(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox], how: str
) -> None:
    """The broker comes back without its retained messages (no persistence, or killed
    before it saved them): the coordinator republishes every view and announces the call
    still on, and does it again on every reconnect."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with running(cfg, tmp_path / "log.sqlite", clock) as coordinator:
        for _ in range(3):
            await coordinator.execute(
                "ticket", "dispenser", "pi-d1", m.IssueRequest(kind="issue", service="tax-filing")
            )
        await coordinator.execute(
            "window", "window", "pi-w1", m.WindowAction(window=1, action="call")
        )
        mosquitto.persistence = False
        if how == "sigkill":
            mosquitto.kill()
            mosquitto.start()
        else:
            mosquitto.restart()
        window, queue, calls = inbox(), inbox(), inbox()
        async with device(cfg, "board", "late", tmp_path) as late:
            await late.subscribe(T.event("call"), calls)
            await late.subscribe(T.window_state(1), window)
            await late.subscribe(T.queue_state("tax-filing"), queue)
            shown = await window.wait_for(lambda ps: bool(ps), timeout=15)
            assert shown[-1].ticket == "A001"
            waiting = await queue.wait_for(lambda ps: bool(ps))
            assert waiting[-1].next == ["A002", "A003"]
            # the call event is not retained: heard by whoever listens at a reconnect
            assert coordinator.session is not None
            coordinator.session.reconnect()
            heard = await calls.wait_for(lambda ps: bool(ps), timeout=15)
            assert heard[-1].ticket == "A001"
            assert heard[-1].window == 1


async def test_an_offline_ticket_a_restarted_broker_dropped_is_replayed_until_answered(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A broker killed and started again empty drops what a dispenser sends before the
    coordinator has subscribed again: a printed offline ticket's replay among it. The
    dispenser sends it again until the coordinator answers, without waiting for another
    key press or reconnect (bench/faults.py broker-kill lost printed tickets so)."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    log_path = tmp_path / "log.sqlite"
    day = cfg.hall.business_day(clock()).isoformat()
    async with (
        device(cfg, "dispenser", "pi-d1", tmp_path) as session,
        dispenser_agent(cfg, session, tmp_path, clock) as (dispenser, leases),
    ):
        async with running(cfg, log_path, clock):
            await dispenser.top_up_leases()
        assert leases.remaining(day, "invoice") > 0
        mosquitto.persistence = False  # nobody's session or subscription survives
        mosquitto.kill()
        mosquitto.start()
        await until(lambda: session.connects == 2 and session.connected, timeout=15)
        issued = await dispenser.issue("invoice")  # nobody answers: printed from the lease
        assert issued.number is not None
        assert issued.printed
        assert not issued.online
        await session.wait_outbox_empty(10)  # the replay went to a broker nobody heard
        async with running(cfg, log_path, clock) as coordinator:
            await until(lambda: issued.number in coordinator.engine.by_number, timeout=30)
            await until(lambda: not leases.unanswered(), timeout=10)
            assert coordinator.engine.by_number[issued.number].offline


async def test_a_command_that_waited_for_the_engine_past_its_deadline_is_refused(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """A CALL that arrives live but waits for the coordinator's lock (behind a storage
    probe, a recovery's republish) until the pad has shown "no reply" is refused, not
    applied: its life counts from its arrival and is judged once it has the lock."""
    text = small_hall_text(mosquitto.url, str(tmp_path / "state"))
    cfg = parse_config(text + "\n[edge]\ncommand_timeout_s = 0.5\n", "small-hall.toml")
    deadline = cfg.edge.command_timeout_s
    replies = inbox()
    async with waiting_ticket_and_pad(cfg, tmp_path, replies) as (coordinator, pad, _):
        call = m.WindowAction(window=1, action="call")
        async with coordinator._lock:  # the engine is busy past the pad's deadline
            with pytest.raises(RequestTimeout):
                await pad.request(T.cmd("window", "pi-w1"), call, timeout=deadline)
            await until(lambda: bool(coordinator._lock._waiters), timeout=10)  # it has arrived
            await asyncio.sleep(deadline)  # and has waited its whole life since
        answered = await replies.wait_for(lambda ps: any(r.corr == call.id for r in ps))
        reply = next(r for r in answered if r.corr == call.id)
        assert not reply.ok
        assert reply.error is not None
        assert reply.error.code == "expired"
        assert coordinator.engine.windows[1].current is None, "a stale CALL was applied"
        assert coordinator.eventlog.lookup(call.id) is None


async def test_a_replay_refused_for_storage_stays_held_until_the_log_keeps_it(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk: Disk
) -> None:
    """A coordinator that cannot write its log answers an offline ticket's replay with
    ``storage_failed``: that is no answer. The dispenser keeps the replay and sends it again
    until the log keeps it, even when the broker has meanwhile lost the copies it held."""
    from edge import dispenser as dispenser_module

    monkeypatch.setattr(dispenser_module, "REPLAY_RETRY_S", (0.2, 0.5))
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as session,
        dispenser_agent(cfg, session, tmp_path, clock) as (dispenser, leases),
    ):
        await dispenser.top_up_leases()
        disk.fail(coordinator)
        answers: list[Any] = []
        request = session.request

        async def answered(topic: str, message: m.Message, *, timeout: float) -> Any:  # noqa: ASYNC109  the wrapped request's own bound
            reply = await request(topic, message, timeout=timeout)
            answers.append(reply)
            return reply

        monkeypatch.setattr(session, "request", answered)
        issued = await dispenser.issue("invoice")  # refused for storage: from the lease
        assert not issued.online
        assert issued.number is not None
        held = {m.decode(m.IssueRequest, p).id for p in leases.unanswered()}
        await until(  # the replay was answered: storage_failed
            lambda: any(a.corr in held and not a.ok for a in answers), timeout=15
        )
        mosquitto.persistence = False  # the broker forgets the copies it held
        mosquitto.kill()
        mosquitto.start()
        await until(lambda: session.connects == 2 and session.connected, timeout=15)
        assert leases.unanswered(), "a replay the log did not keep was let go"
        disk.read_only = False
        await until(lambda: issued.number in coordinator.engine.by_number, timeout=20)
        await asyncio.wait_for(dispenser.replays_answered(), 15)


async def test_a_request_answered_too_late_for_its_dispenser_is_not_issued(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A key press whose request waits in the coordinator until its reply could no longer
    reach the dispenser in time is refused, not issued: the dispenser prints from its lease,
    and the hall holds one ticket for the press, the printed one (an issued ticket nobody
    holds was called before the replay voided it: bench/faults.py read-only)."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as session,
        dispenser_agent(cfg, session, tmp_path, clock) as (dispenser, _),
    ):
        await dispenser.top_up_leases()
        # busy until a reply would no longer reach the dispenser with time to spare
        async with coordinator._lock:
            press = asyncio.create_task(dispenser.issue("invoice"))
            await until(lambda: bool(coordinator._lock._waiters), timeout=10)
            await asyncio.sleep(cfg.edge.reply_timeout_s - REPLY_MARGIN_S)
        issued = await press
        assert not issued.online
        assert issued.number is not None
        assert issued.printed
        await asyncio.wait_for(dispenser.replays_answered(), 15)
        tickets = [t for t in coordinator.engine.tickets if t.state is m.TicketState.WAITING]
        assert [t.number for t in tickets] == [issued.number]


async def test_a_command_whose_sender_has_little_left_is_judged_by_that(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """A sender that stood still before publishing hands on a command with less than its
    whole deadline left (MQTT 5 expiry: what is left, in whole seconds). The coordinator
    judges it by that, not by the full deadline from its arrival: here 1 s is left, so a
    reply later than 2/3 s after arrival would come too late, and the command is refused."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    replies = inbox()
    async with waiting_ticket_and_pad(cfg, tmp_path, replies) as (coordinator, pad, _):
        call = m.WindowAction(window=1, action="call")
        now = asyncio.get_running_loop().time()
        async with coordinator._lock:  # its full deadline would allow 2.5 s from arrival
            await pad.publish(T.cmd("window", "pi-w1"), call, deadline=now + 0.9)
            await until(lambda: bool(coordinator._lock._waiters), timeout=10)
            await asyncio.sleep(0.8)  # over 1 s less a third, well under 2.5 s
        answered = await replies.wait_for(lambda ps: any(r.corr == call.id for r in ps))
        reply = next(r for r in answered if r.corr == call.id)
        assert reply.error is not None
        assert reply.error.code == "expired"
        assert coordinator.engine.windows[1].current is None


async def test_a_request_whose_connection_is_gone_is_not_applied(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A request read just before the broker died waits for the engine; by then its reply
    cannot be sent, and its dispenser will print from its lease: it is not issued (the
    broker delivers it again if it kept it). bench/faults.py broker-kill found the ticket
    issued anyway, which nobody held, called before the replay voided it."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.wait_connected(10)
        session = coordinator.session
        assert session is not None
        request = m.IssueRequest(kind="issue", service="tax-filing")
        mosquitto.persistence = False  # it comes back without the request
        async with coordinator._lock:
            await dispenser.publish(T.req("pi-d1"), request)
            await until(lambda: bool(coordinator._lock._waiters), timeout=10)
            mosquitto.kill()
            await until(lambda: not session.link_up, timeout=10)
        mosquitto.start()  # the coordinator's next connection comes after that handler
        await until(lambda: session.connects == 2 and session.connected, timeout=15)
        assert coordinator.engine.tickets == []
        assert coordinator.eventlog.lookup(request.id) is None


def _hall(url: str, tmp_path: Path, protocol: str) -> HallConfig:
    text = small_hall_text(url, str(tmp_path / "state")).replace(
        "keepalive = 5\n", f'keepalive = 5\nprotocol = "{protocol}"\n'
    )
    return parse_config(text, "small-hall.toml")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_call_that_outlived_its_deadline_is_never_applied_and_the_pad_can_ask(
    mosquitto: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    """A CALL pressed while the coordinator was down waits at the broker; when the
    coordinator is back after the pad's deadline the CALL is dropped (MQTT 5: by the broker)
    or refused (3.1.1: it waited while the coordinator was away), never applied. The pad's
    query then says it did not happen, and a CALL that did happen is reported as such."""
    cfg = _hall(mosquitto.url, tmp_path, protocol)
    clock = FakeClock()
    log_path = tmp_path / "log.sqlite"
    deadline = cfg.edge.command_timeout_s
    async with device(cfg, "window", "pi-w1", tmp_path) as pad:
        async with running(cfg, log_path, clock) as coordinator:
            await coordinator.execute(
                "ticket", "dispenser", "pi-d1", m.IssueRequest(kind="issue", service="tax-filing")
            )
        await pad.wait_connected(10)
        call = m.WindowAction(window=1, action="call")
        with pytest.raises(RequestTimeout):  # nobody answers: the pad shows "no reply"
            await pad.request(T.cmd("window", "pi-w1"), call, timeout=deadline)
        if protocol == "5":  # the broker counts its life in whole seconds
            await asyncio.sleep(1.0)
        async with running(cfg, log_path, clock) as coordinator:
            ask = m.Query(window=1, action="query", about=call.id)
            answer = await pad.request(T.cmd("window", "pi-w1"), ask, timeout=10)
            assert answer.ok
            assert answer.happened is False
            assert coordinator.engine.windows[1].current is None, "a stale CALL was applied"
            again = m.WindowAction(window=1, action="call")
            reply = await pad.request(T.cmd("window", "pi-w1"), again, timeout=10)
            assert reply.ok
            assert reply.ticket == "A001"
            answer = await pad.request(
                T.cmd("window", "pi-w1"),
                m.Query(window=1, action="query", about=again.id),
                timeout=10,
            )
            assert answer.happened is True
            assert answer.ticket == "A001"
        with sqlite3.connect(log_path) as db:
            logged = {row[0] for row in db.execute("SELECT cmd_id FROM entries")}
        assert call.id not in logged
        assert again.id in logged


async def test_a_command_whose_dispatch_lagged_its_arrival_is_judged_from_its_arrival(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CALL read in time but dispatched late (queued behind a backlog, a busy loop,
    concurrent dispatch) is refused as expired: its age is fixed when paho hands it over,
    not when its handler starts."""
    text = small_hall_text(mosquitto.url, str(tmp_path / "state"))
    cfg = parse_config(text + "\n[edge]\ncommand_timeout_s = 0.5\n", "small-hall.toml")
    replies = inbox()
    async with waiting_ticket_and_pad(cfg, tmp_path, replies) as (coordinator, pad, _):
        session = coordinator.session
        assert session is not None
        dispatch, read = session._dispatch, asyncio.Event()

        async def lagging(message: Any) -> bool:  # read now, dispatched past its deadline
            if message.topic.value == T.cmd("window", "pi-w1"):
                read.set()
                await asyncio.sleep(coordinator.deadline_s(call) + 0.1)
            return await dispatch(message)

        monkeypatch.setattr(session, "_dispatch", lagging)
        call = m.WindowAction(window=1, action="call")
        loop = asyncio.get_running_loop()
        await pad.publish(T.cmd("window", "pi-w1"), call, deadline=loop.time() + 0.5)
        answered = await replies.wait_for(lambda ps: any(r.corr == call.id for r in ps))
        assert read.is_set()
        reply = next(r for r in answered if r.corr == call.id)
        assert reply.error is not None
        assert reply.error.code == "expired"
        assert coordinator.engine.windows[1].current is None, "a stale CALL was applied"


async def test_a_request_that_waited_for_a_restarted_coordinator_is_not_taken_as_fresh(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """A dispenser's request (1.5 s, so 2 s of MQTT 5 expiry) that waited at the broker
    while the coordinator restarted is refused: whole seconds cannot prove it in time (the
    broker's "2 s left" allows ~1 s gone), and the dispenser has printed it offline by the
    time a reply could come. bench/faults.py coordinator-kill found such a request applied,
    answered after its dispenser's deadline, and the ticket nobody held called."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    replies = inbox()
    log_path = tmp_path / "log.sqlite"
    async with (
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "board", "watch", tmp_path) as watch,
    ):
        await watch.subscribe(T.reply("dispenser", "pi-d1"), replies)
        await watch.wait_connected(10)
        await dispenser.wait_connected(10)
        async with running(cfg, log_path, FakeClock()):
            pass  # its session is at the broker now, which keeps what comes meanwhile
        request = m.IssueRequest(kind="issue", service="tax-filing")
        deadline = asyncio.get_running_loop().time() + cfg.edge.reply_timeout_s
        await dispenser.publish(T.req("pi-d1"), request, deadline=deadline)
        async with running(cfg, log_path, FakeClock()) as coordinator:
            answered = await replies.wait_for(lambda ps: any(r.corr == request.id for r in ps))
            reply = next(r for r in answered if r.corr == request.id)
            assert reply.error is not None, f"applied: {reply}"
            assert reply.error.code == "expired"
            assert coordinator.engine.tickets == []


async def test_a_call_answered_storage_failed_is_not_applied_when_delivered_again(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox], disk: Disk
) -> None:
    """The pad was told the CALL failed (系统存储故障), so its operator presses again or the
    dispenser prints from its lease: the copy the broker delivers again once the disk is
    back, well inside the deadline, is refused as expired, not applied. bench/faults.py
    disk-full found such an issue request applied 0.6 s after it was sent, and the
    number, which nobody held, called."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    replies, alerts = inbox(), inbox()
    async with waiting_ticket_and_pad(cfg, tmp_path, replies) as (coordinator, pad, watch):
        await watch.subscribe(T.event("alert"), alerts)
        disk.fail(coordinator)
        call = m.WindowAction(window=1, action="call")
        told = await pad.request(T.cmd("window", "pi-w1"), call, timeout=cfg.edge.command_timeout_s)
        assert told.error is not None
        assert told.error.code == "storage_failed"
        disk.read_only = False  # back within a second: the copy comes well in time
        await alerts.wait_for(lambda ps: any(a.kind == "storage_recovered" for a in ps))
        answered = await replies.wait_for(lambda ps: sum(r.corr == call.id for r in ps) == 2)
        again = [r for r in answered if r.corr == call.id][1]
        assert again.error is not None
        assert again.error.code == "expired"
        assert coordinator.engine.windows[1].current is None, "a CALL its pad saw fail was applied"
