"""The coordinator's own checks, with no broker ACL in front of it (an open test broker):
what a mis-configured broker would let through must still change nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.service import Coordinator
from hallq import messages as m
from hallq.bus import Session
from hallq.config import HallConfig, parse_config
from hallq.errors import ConfigError
from hallq.topics import HallTopics

from .conftest import Inbox, Mosquitto, until
from .coordinated import FakeClock, alerts_of, device, running
from .halls import UNPACED, small_hall_text

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


def hall(url: str, tmp_path: Path, security: str = "") -> HallConfig:
    text = small_hall_text(url, str(tmp_path / "state"))
    text = text.replace(
        'services = ["tax-filing", "invoice", "green"]', 'services = ["tax-filing", "invoice"]'
    )
    return parse_config(
        text + '\n[security]\nsupervisor_clients = ["desk-1"]\n' + security, "hall.toml"
    )


async def test_only_named_supervisors_own_windows_and_own_services_are_obeyed(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = hall(mosquitto.url, tmp_path)
    alerts = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        device(cfg, "supervisor", "pi-w1", tmp_path) as fake_desk,
        device(cfg, "supervisor", "desk-1", tmp_path) as desk,
        device(cfg, "window", "pi-b1", tmp_path) as board_as_pad,
        device(cfg, "window", "pi-zz", tmp_path) as stranger,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await desk.subscribe(T.event("alert"), alerts)
        for s in (fake_desk, desk, board_as_pad, stranger, dispenser):
            await s.wait_connected(10)
        seq = coordinator.queue.seq

        async def refused(session: object, topic: str, command: m.Message) -> str:
            reply = await session.request(topic, command, timeout=10)  # type: ignore[attr-defined]
            assert not reply.ok
            return str(reply.error.code)

        close = m.WindowAction(window=1, action="close")
        assert await refused(fake_desk, T.cmd("supervisor", "pi-w1"), close) == ("not_a_supervisor")
        assert await refused(board_as_pad, T.cmd("window", "pi-b1"), close) == "wrong_role"
        assert await refused(stranger, T.cmd("window", "pi-zz"), close) == "unknown_device"
        green = m.IssueRequest(kind="issue", service="green")
        assert await refused(dispenser, T.req("pi-d1"), green) == "not_your_service"
        assert coordinator.queue.seq == seq, "a refused command reached the event log"

        ok = await desk.request(T.cmd("supervisor", "desk-1"), close, timeout=10)
        assert ok.ok, "a named supervisor console is obeyed"
        seq = coordinator.queue.seq
        again = await desk.request(T.cmd("supervisor", "desk-1"), close, timeout=10)
        assert again.ok, "its repeat is answered"
        assert coordinator.queue.seq == seq, "its repeat answered from the log"
        found = await alerts.wait_for(lambda ps: sum(p.kind == "command_refused" for p in ps) >= 4)
        named = {p.client for p in found if p.kind == "command_refused"}
        assert named == {"pi-w1", "pi-b1", "pi-zz", "pi-d1"}

        # the same refusal again within the minute: answered, not alerted again
        assert await refused(fake_desk, T.cmd("supervisor", "pi-w1"), close) == ("not_a_supervisor")
        ticket = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="invoice"), timeout=10
        )
        assert ticket.ok
    assert sum(p.kind == "command_refused" and p.client == "pi-w1" for p in alerts.payloads) == 1


async def test_a_client_cannot_restart_the_coordinator_session_with_a_hostile_payload(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = hall(mosquitto.url, tmp_path)
    errors = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        device(cfg, "supervisor", "desk-1", tmp_path) as desk,
    ):
        await desk.subscribe(T.error("coordinator", "coordinator"), errors)
        await pad.wait_connected(10)
        await desk.wait_connected(10)
        client = pad._client
        assert client is not None
        topic = T.cmd("window", "pi-w1")
        hostile = [
            b'{"id":"01KBRQW4C3X8FQ3B7K0Q9JZ9ZZ","window":1,"action":"call","'
            + b"\xe4\xb8\x80" * 400
            + b'":1}',
            b'{"id":"01KBRQW4C3X8FQ3B7K0Q9JZ9ZZ","window":1,"action":"call_ticket",'
            b'"ticket":"11010519491231002X"}',
            b'{"window":1,"action":"call"}',
            b'{"v":true,"id":"01KBRQW4C3X8FQ3B7K0Q9JZ9ZZ","window":1,"action":"call"}',
        ]
        for payload in hostile:
            await client.publish(topic, payload, qos=1)
        found = await errors.wait_for(lambda ps: len(ps) >= len(hostile))
        assert [r.field for r in found][2:] == ["id", "v"]
        assert len(found[0].field) <= 80
        assert found[0].field.endswith("...")
        assert all("11010519491231002X" not in (r.message + (r.field or "")) for r in found)
        assert coordinator.session is not None
        assert coordinator.session.connects == 1
        reply = await pad.request(topic, m.WindowAction(window=1, action="open"), timeout=10)
        assert reply.ok, "still serving"


async def test_a_flooding_device_is_cut_to_its_rate_and_named_in_an_alert(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = hall(mosquitto.url, tmp_path, "client_rate_per_s = 5\nclient_burst = 20\n")
    alerts = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.subscribe(T.event("alert"), alerts)
        await pad.wait_connected(10)
        await dispenser.wait_connected(10)
        client = pad._client
        assert client is not None
        for _ in range(300):
            await client.publish(T.cmd("window", "pi-w1"), b"{}", qos=0)
        found = await alerts.wait_for(lambda ps: any(p.kind == "client_flood" for p in ps))
        flood = next(p for p in found if p.kind == "client_flood")
        assert flood.client == "pi-w1"
        assert "window pi-w1" in flood.message
        ticket = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="invoice"), timeout=10
        )
        assert ticket.ok, "the others are still served"
        assert coordinator.authz.dropped("window/pi-w1") > 0
        assert coordinator.authz.dropped("dispenser/pi-d1") == 0


@contextlib.asynccontextmanager
async def tickets_and_a_pad(
    mosquitto: Mosquitto, tmp_path: Path, tickets: int
) -> AsyncIterator[tuple[Coordinator, Session, FakeClock]]:
    """The hall with ``tickets`` of tax filing waiting, and window 1's pad (pi-w1)."""
    cfg = hall(mosquitto.url, tmp_path)
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await pad.wait_connected(10)
        await dispenser.wait_connected(10)
        for _ in range(tickets):
            issue = m.IssueRequest(kind="issue", service="tax-filing")
            assert (await dispenser.request(T.req("pi-d1"), issue, timeout=10)).ok
        yield coordinator, pad, clock


async def test_a_pad_that_serves_faster_than_anyone_can_is_named(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Found attacking a hall with a window Pi's password: a CALL every 10.2 s, each
    finishing the last once its hold had passed, marked 18 tickets served in 33 s, and no
    supervisor can bring a served ticket back. The fifth at one window within a minute is
    named to the desk, which offers to suspend that login."""
    async with tickets_and_a_pad(mosquitto, tmp_path, 7) as (coordinator, pad, clock):
        for _ in range(6):  # the first calls; the next five each end one
            call = m.WindowAction(window=1, action="call")
            assert (await pad.request(T.cmd("window", "pi-w1"), call, timeout=10)).ok
            clock.now += 10.5
        await until(lambda: bool(alerts_of(coordinator, "serve_burst")))
        assert len(alerts_of(coordinator, "serve_burst")) == 1
        alert = alerts_of(coordinator, "serve_burst")[0]
        assert alert.client == "pi-w1"
        assert "1号窗口" in alert.message
        assert "结束 5 个号 (办结、过号或转出)" in alert.message


async def test_a_pad_skipping_the_queue_away_or_calling_emergencies_all_day_is_named(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Found by an attacker with a window Pi's password: call, wait out the hold, skip
    (or transfer), 36 tickets a minute taken out of the queue and no alert, as only served
    ones were counted; and 220 emergency calls in 14 s pushed every other alert, the
    取号过快 naming a stolen dispenser among them, out of the coordinator's list."""
    async with tickets_and_a_pad(mosquitto, tmp_path, 6) as (coordinator, pad, clock):
        await coordinator._name_device("issue_burst", "pi-d1", "pi-d1 取号过快")
        for _ in range(5):
            call = m.WindowAction(window=1, action="call")
            assert (await pad.request(T.cmd("window", "pi-w1"), call, timeout=10)).ok
            clock.now += 10.5
            skip = m.WindowAction(window=1, action="skip")
            assert (await pad.request(T.cmd("window", "pi-w1"), skip, timeout=10)).ok
        await until(lambda: bool(alerts_of(coordinator, "serve_burst")))
        assert "过号" in alerts_of(coordinator, "serve_burst")[0].message
        for _ in range(220):  # each a command of its own (a repeated id is answered once)
            await pad.publish(
                T.cmd("window", "pi-w1"), m.WindowAction(window=1, action="emergency")
            )
        await until(lambda: bool(alerts_of(coordinator, "emergency_burst")), 20)
        assert alerts_of(coordinator, "emergency_burst")[0].client == "pi-w1"
        await until(lambda: len(alerts_of(coordinator, "emergency")) == 5, 20)
        assert [a.client for a in alerts_of(coordinator, "issue_burst")] == ["pi-d1"]  # still there


async def test_a_presence_naming_another_device_cannot_keep_that_one_online(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """Found attacking a provisioned hall with a window Pi's password: a retained presence
    on its own status topic naming pi-d1, with a huge boot, made pi-d1's real will look
    stale, so pi-d1 stayed online on the desk when it went (and after a restart, as the
    message is retained). It counts for nobody now, and the desk is told who sent it."""
    cfg = hall(mosquitto.url, tmp_path)
    alerts = inbox()
    async with running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator:
        assert coordinator.session is not None
        await coordinator.session.subscribe(T.event("alert"), alerts)
        async with device(cfg, "window", "pi-w1", tmp_path) as thief:
            await thief.wait_connected(10)
            async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
                await dispenser.wait_connected(10)
                lie = m.Presence(state="online", boot=10**15, role="dispenser", client="pi-d1")
                await thief.publish(T.status("window", "pi-w1"), lie)  # retained, as status is
                found = await alerts.wait_for(
                    lambda ps: any(p.kind == "presence_forged" for p in ps)
                )
                forged = next(p for p in found if p.kind == "presence_forged")
                assert forged.client == "pi-w1"
                assert "冒充 pi-d1" in forged.message
            await until(
                lambda: any(
                    d.client == "pi-d1" and d.online is False for d in coordinator.devices.all()
                )
            )


@pytest.mark.timeout(120)
async def test_a_dispensers_outbox_drains_within_the_rate_limit_and_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """After an outage a dispenser replays its outbox; it paces itself under the
    coordinator's per-client limit (edge.agent.make_session), so none is dropped."""
    from edge.agent import make_session

    cfg = hall(mosquitto.url, tmp_path, "client_rate_per_s = 80\nclient_burst = 30\n" + UNPACED)
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        make_session(cfg, cfg.agent("pi-d1")) as dispenser,
    ):
        await dispenser.wait_connected(10)
        assert dispenser.drain_per_s == 40
        mosquitto.stop()
        for _ in range(60):
            await dispenser.publish(
                T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), queue=True
            )
        assert dispenser.outbox_size == 60
        issued = asyncio.Event()
        coordinator.add_listener(
            lambda _: issued.set() if len(coordinator.engine.tickets) >= 60 else None
        )
        mosquitto.start()
        await dispenser.wait_outbox_empty(60)  # generous: CI machines are shared
        await asyncio.wait_for(issued.wait(), 40)
        assert coordinator.authz.dropped("dispenser/pi-d1") == 0


async def test_only_a_guide_s_kiosk_issues_tickets_ahead_of_the_queue(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A green or assisted ticket goes ahead of every normal one. The dispenser agent never
    asks for one, yet any dispenser's login could: one password in other hands sold places
    at the head of every queue. Now only a kiosk whose agent lists the priority (a 导税
    guide's, agents.priorities) may issue it."""
    text = small_hall_text(mosquitto.url, str(tmp_path / "state"))
    kiosk = text.replace('role = "dispenser"\n', 'role = "dispenser"\npriorities = ["assisted"]\n')
    for cfg, allowed in (
        (parse_config(text, "hall.toml"), set()),
        (parse_config(kiosk, "k.toml"), {"assisted"}),
    ):
        async with (
            running(cfg, tmp_path / f"log-{len(allowed)}.sqlite", FakeClock()) as coordinator,
            device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        ):
            await dispenser.wait_connected(10)
            for priority in (m.Priority.GREEN, m.Priority.ASSISTED, m.Priority.NORMAL):
                request = m.IssueRequest(kind="issue", service="tax-filing", priority=priority)
                reply = await dispenser.request(T.req("pi-d1"), request, timeout=10)
                if priority is m.Priority.NORMAL or priority in allowed:
                    assert reply.ok, (priority, reply)
                else:
                    assert reply.error.code == "priority_not_allowed", (priority, reply)
            kept = {t.priority for t in coordinator.engine.tickets}
            assert kept == {m.Priority.NORMAL, *allowed}


def test_a_priority_grant_is_only_for_a_dispenser() -> None:
    text = small_hall_text()
    wrong = text.replace('role = "window"\n', 'role = "window"\npriorities = ["green"]\n')
    with pytest.raises(ConfigError) as err:
        parse_config(wrong, "hall.toml")
    assert "agents[0].priorities (agent pi-w1, line " in str(err.value)
    assert "): only a dispenser issues tickets" in str(err.value)


async def test_a_dispenser_issues_online_at_a_kiosks_pace_and_its_replays_are_never_paced(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    """One dispenser's password used by a script issued 949 tickets at 19 a second, a
    service's daily cap within 16 s. Past a kiosk's pace (issue_rate_per_min, burst
    issue_burst) it is refused, the desk is told once, and a person's offline tickets,
    already printed, still join the queue."""
    import datetime as dt

    cfg = hall(mosquitto.url, tmp_path, "issue_rate_per_min = 6\nissue_burst = 3\n")
    clock = FakeClock()
    alerts = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "supervisor", "desk-1", tmp_path) as desk,
    ):
        await desk.subscribe(T.event("alert"), alerts)
        await dispenser.wait_connected(10)
        lease = await dispenser.request(
            T.req("pi-d1"), m.LeaseRequest(kind="lease", service="tax-filing", size=5), timeout=10
        )
        assert lease.ok

        async def issue(command: m.IssueRequest | None = None) -> m.IssueReply:
            command = command or m.IssueRequest(kind="issue", service="tax-filing")
            reply = await dispenser.request(T.req("pi-d1"), command, timeout=10)
            assert isinstance(reply, m.IssueReply)
            return reply

        first = m.IssueRequest(kind="issue", service="tax-filing")
        burst = [await issue(first), await issue(), await issue()]
        assert all(r.ok for r in burst)
        refused = [await issue() for _ in range(5)]
        assert {r.error.code for r in refused if r.error} == {"issue_paced"}
        assert refused[0].error is not None
        assert "过于频繁" in refused[0].error.message
        again = await issue(first)  # the broker's copy of an issued request: its ticket
        assert again.ok
        assert again.ticket == burst[0].ticket
        printed = dt.datetime.fromtimestamp(clock.now - 60, dt.UTC)
        replays = [
            await issue(
                m.IssueRequest(
                    kind="issue",
                    service="tax-filing",
                    offline=m.OfflineIssue(number=f"A{n:03d}", issued_at=printed),
                )
            )
            for n in range(lease.first, lease.first + 4)
        ]
        assert all(r.ok for r in replays), replays
        assert len(coordinator.engine.tickets) == 3 + 4
        clock.now += 10.0  # a person's pace: one ticket each 10 s
        assert (await issue()).ok
        assert (await issue()).error.code == "issue_paced"  # type: ignore[union-attr]

        found = await alerts.wait_for(lambda ps: any(p.kind == "issue_burst" for p in ps))
        named = [a for a in found if a.kind == "issue_burst"]
        assert [a.client for a in named] == ["pi-d1"]
        assert "每分钟 6 张" in named[0].message
        told = [r for r in caplog.records if "tickets a minute" in r.getMessage()]
        assert len(told) == 1, [r.getMessage() for r in told]


async def test_leasing_and_replaying_block_after_block_is_held_to_a_kiosk_s_pace(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """Found by an attacker with one dispenser's password: offline replays were never
    paced, so "lease 50, replay all 50 as printed offline, lease again" put 1,050 tickets
    into one queue in a minute, and naming its own lease request as the ticket's
    ``supersedes`` kept the desk from hearing of it. Replays now have a bucket as deep as
    one outage can print (the lease cap), refilled at a kiosk's pace; a replay past it is
    refused for the dispenser to send again later, and only an online issue request of
    the same dispenser excuses a print time while connected."""
    import datetime as dt

    cfg = hall(
        mosquitto.url,
        tmp_path,
        "issue_rate_per_min = 6\nissue_burst = 3\n\n[edge]\nlease_size = 5\nlease_low_water = 1\n",
    )
    assert cfg.edge.lease_cap == 11  # the replay bucket: 11 + issue_burst 3
    clock = FakeClock()
    alerts = inbox()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "supervisor", "desk-1", tmp_path) as desk,
    ):
        await desk.subscribe(T.event("alert"), alerts)
        await dispenser.wait_connected(10)
        await until(lambda: coordinator.devices.seen("dispenser", "pi-d1") is not None, 10)
        clock.now += 600  # connected all along since: no print time in a gap

        replies: list[m.IssueReply] = []
        while not replies or replies[-1].ok:
            asked = m.LeaseRequest(kind="lease", service="invoice", size=5)
            lease = await dispenser.request(T.req("pi-d1"), asked, timeout=10)
            assert lease.ok, lease
            for n in range(lease.first, lease.last + 1):
                printed = m.OfflineIssue(
                    number=f"B{n:03d}",
                    issued_at=dt.datetime.fromtimestamp(clock.now - 10, dt.UTC),
                    supersedes=asked.id,  # its own lease request: no excuse
                )
                replay = m.IssueRequest(kind="issue", service="invoice", offline=printed)
                reply = await dispenser.request(T.req("pi-d1"), replay, timeout=10)
                replies.append(reply)
                if not reply.ok:
                    break
        assert len(replies) == 14 + 1, [r.error for r in replies]
        assert replies[-1].error is not None
        assert replies[-1].error.code == "replay_paced"
        kinds = {"offline_while_connected", "issue_burst"}
        found = await alerts.wait_for(lambda ps: kinds <= {p.kind for p in ps})
        assert {a.client for a in found if a.kind in kinds} == {"pi-d1"}
        clock.now += 10  # a kiosk's pace again: the held replay goes in
        again = await dispenser.request(T.req("pi-d1"), replay, timeout=10)
        assert again.ok, again
