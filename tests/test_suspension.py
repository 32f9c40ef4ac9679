"""A supervisor suspends one device's login (its password in the wrong hands): refused from
then on, whatever the broker lets through, until resumed; the flood's tickets voided; and the
log remembers it across a restart, a checkpoint and the next business day."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coordinator import authz
from coordinator.eventlog import _KINDS, _OLD_KINDS, EventLog
from coordinator.hallqueue import HallQueue
from coordinator.suspension import REFUSED, DeviceCommand
from coordinator.web.desk import AlertBook
from coordinator.web.views import alerts_json, desk_alerts
from hallq import messages as m
from hallq.config import parse_config
from hallq.messages import TicketState
from hallq.topics import HallTopics
from hallq.ulid import new_ulid
from hallqctl.status import collect_status

from .conftest import Mosquitto, until
from .coordinated import FakeClock, alerts_of, running
from .coordinated import device as coordinated_device
from .halls import at, small_hall, small_hall_text
from .test_edge_agents import agent
from .test_hallqueue import issue, lease, make_queue, peek_queue
from .test_web_helpers import VIEWER_PASSWORD, login, supervisor_auth, web_hall, web_running

T = HallTopics("test-hall")


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def device(action: str, client: str = "pi-d1", since: float | None = None) -> DeviceCommand:
    return DeviceCommand(
        kind="device",
        action=action,  # type: ignore[arg-type]
        client=client,
        void_since=None if since is None else _utc(since),
    )


def offline(number: str, issued_at: float) -> m.IssueRequest:
    return m.IssueRequest(
        kind="issue",
        service="tax-filing",
        offline=m.OfflineIssue(number=number, issued_at=_utc(issued_at)),
    )


def code(done: Any) -> str | None:
    error = done.record["error"]
    return None if error is None else str(error["code"])


def test_a_suspended_login_is_refused_until_resumed_and_its_flood_is_voided(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    real = [q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, 0, i)) for i in range(3)]
    first = lease(q)
    flood = [q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, 5, i)) for i in range(4)]
    # a replay that came in the flood, "printed" at the opening: voided by its arrival (a
    # thief backdated 2,400 replays, and suspending it voided the 41 issued online)
    backdated = offline(f"A{first + 2:03d}", at(8, 0, 5))
    flood.append(q.submit("ticket", "dispenser", "pi-d1", backdated, at(9, 5, 30)))
    assert all(d.record["ok"] for d in real + flood)

    # a window's login may not suspend anyone, nor may anyone suspend what is not a device
    refused = q.submit("device", "window", "pi-w1", device("suspend"), at(9, 6))
    assert code(refused) == "wrong_role"
    assert code(q.submit("device", "supervisor", "alice", device("suspend", "x"), at(9, 6))) == (
        "unknown_device"
    )
    assert q.engine.suspended == {}

    done = q.submit("device", "supervisor", "alice", device("suspend", since=at(9, 5)), at(9, 6))
    assert done.record["ok"]
    assert {t.number for t in q.engine.tickets if t.state is TicketState.VOIDED} == {
        d.record["ticket"] for d in flood
    }
    assert [t.state for t in q.engine.tickets[:3]] == [TicketState.WAITING] * 3
    again = q.submit("device", "supervisor", "alice", device("suspend"), at(9, 6, 1))
    assert code(again) == "already_suspended"

    online = q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, 7))
    assert code(online) == "device_suspended"
    assert online.record["error"]["message"] == "本机已停用，请到其他取号机取号"
    # an offline ticket's print time is the sender's word: a thief backdates its replays to
    # the head of the queue, so those wait on the dispenser too until it is resumed
    early = offline(f"A{first:03d}", at(9, 5, 30))  # "printed" before the suspension
    late = offline(f"A{first + 1:03d}", at(9, 6, 30))
    for command in (
        m.LeaseRequest(kind="lease", service="tax-filing", size=5),
        m.VoidRequest(kind="void", number="A001", reason="not printed"),
        early,
        late,
    ):
        assert code(q.submit("ticket", "dispenser", "pi-d1", command, at(9, 7))) == (
            "device_suspended"
        ), command
    # other devices go on
    call = q.submit("window", "window", "pi-w1", m.WindowAction(window=1, action="call"), at(9, 8))
    assert call.record["ticket"] == "A001"

    # a restart (the log replayed) and a checkpoint both remember it
    replayed = peek_queue(path, core_cls)
    replayed.recover()
    assert replayed.engine.suspended == {"pi-d1": at(9, 6)}
    q.save_checkpoint(q.seq, q.checkpoint())
    restored = peek_queue(path, core_cls)
    assert restored.recover() == 0
    assert restored.engine.suspended == {"pi-d1": at(9, 6)}

    resumed = q.submit("device", "supervisor", "alice", device("resume"), at(9, 10))
    assert resumed.record["ok"]
    assert code(q.submit("device", "supervisor", "alice", device("resume"), at(9, 11))) == (
        "not_suspended"
    )
    assert q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, 12)).record["ok"]
    # its refusals were not logged (a thief's flood does not fill the log): the replays the
    # dispenser held, sent again, are taken now, each in the place it was printed for
    for replay in (early, late):
        assert q.submit("ticket", "dispenser", "pi-d1", replay, at(9, 13)).record["ok"]
    assert q.engine.by_number[f"A{first:03d}"].issued_at == at(9, 5, 30)
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT source FROM entries WHERE seq > ?", (done.seq,)).fetchall()
    assert [s for (s,) in rows if s == "dispenser/pi-d1"] == ["dispenser/pi-d1"] * 3, rows

    # a suspension outlives the business day
    q.submit("device", "supervisor", "alice", device("suspend"), at(17))
    tomorrow = q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, day=31))
    assert code(tomorrow) == "device_suspended"
    assert q.engine.day == dt.date(2026, 12, 1)
    assert q.engine.suspended == {"pi-d1": at(17)}


def test_suspending_a_window_pi_pauses_its_open_windows_and_a_replay_does_alike(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """Its pads cannot call any more: an open window of it would count in every wait
    estimate as serving. Its closed windows stay closed; resuming it opens nothing (the
    window's 恢复 key does, once someone is there)."""
    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    close_2 = m.WindowAction(window=2, action="close")
    assert q.submit("window", "window", "pi-w1", close_2, at(9)).record["ok"]
    assert q.submit("device", "supervisor", "alice", device("suspend", "pi-w1"), at(9, 1)).record[
        "ok"
    ]
    statuses = {n: w.status.value for n, w in q.engine.windows.items()}
    assert statuses == {1: "paused", 2: "closed", 3: "open", 4: "open"}
    assert q.submit("device", "supervisor", "alice", device("resume", "pi-w1"), at(9, 2)).record[
        "ok"
    ]
    assert q.engine.windows[1].status.value == "paused"
    replayed = peek_queue(path, core_cls)
    replayed.recover()
    assert {n: w.status.value for n, w in replayed.engine.windows.items()} == statuses
    resume = m.WindowAction(window=1, action="resume")
    assert q.submit("window", "window", "pi-w1", resume, at(9, 3)).record["ok"]


def test_the_desk_says_in_chinese_what_the_wire_s_english_alerts_mean(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """A refused command's and a flood's alert carry the coordinator's English on the
    wire (authz builds them); the supervisor reads them in Chinese, with the device's
    configured role, and the code kept for the engineer."""
    import types

    from coordinator.web.views import _alert_text

    q = make_queue(tmp_path / "log.sqlite", core_cls)
    hall = types.SimpleNamespace(engine=q.engine, cfg=q.cfg)

    def text(alert: m.AlertEvent) -> str:
        return _alert_text(hall, alert.model_dump())

    refusal = authz.Refusal("not_your_window", "pi-w1 may not act for window 3")
    assert text(authz.refusal_alert("window", "pi-w1", refusal)) == (
        "pi-w1 (窗口机) 发来别的窗口的指令, 已拒绝 (not_your_window): 它自己的软件不会这样发"
    )
    stranger = authz.Refusal("unknown_device", "pi-x is not an agent of hall test-hall")
    assert text(authz.refusal_alert("dispenser", "pi-x", stranger)).startswith(
        "pi-x (未登记) 发来本厅未登记设备的指令, 已拒绝 (unknown_device)"
    )
    assert text(authz.flood_alert("board", "pi-b1", 20.0)) == (
        "pi-b1 (显示屏) 每秒发送超过 20 条消息, 多余的已丢弃"
    )


def test_a_voided_flood_gives_back_the_daily_cap_and_is_not_counted_as_issued(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """The small hall's invoice service takes 5 tickets a day. A thief took them all; once
    they are voided with the suspension, the hall's people can have them again, and the
    day's figures do not count them as issued."""
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    flood = [
        q.submit("ticket", "dispenser", "pi-d1", issue("invoice"), at(9, 0, i)) for i in range(5)
    ]
    assert all(d.record["ok"] for d in flood)
    assert code(q.submit("ticket", "dispenser", "pi-d1", issue("invoice"), at(9, 1))) == (
        "daily_cap_reached"
    )
    q.submit("device", "supervisor", "alice", device("suspend", since=at(9)), at(9, 2))
    assert q.engine.stats_state(q.seq, at(9, 2)).per_service["invoice"].issued == 0
    q.submit("device", "supervisor", "alice", device("resume"), at(9, 3))
    again = [
        q.submit("ticket", "dispenser", "pi-d1", issue("invoice"), at(9, 4, i)) for i in range(5)
    ]
    assert all(d.record["ok"] for d in again), [code(d) for d in again]
    assert q.engine.stats_state(q.seq, at(9, 5)).per_service["invoice"].issued == 5


def _schema_of(path: Path, old: str, new: str) -> str:
    """Rewrite the entries table's constraint as an earlier version created it (the CHECK
    is not in the file's rows, so this is that version's file); the old text."""
    with sqlite3.connect(path) as db:
        sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
        if old != new:
            version = db.execute("PRAGMA schema_version").fetchone()[0]
            db.execute("PRAGMA writable_schema = ON")
            db.execute(
                "UPDATE sqlite_master SET sql = ? WHERE name = 'entries'", (sql.replace(old, new),)
            )
            db.execute(f"PRAGMA schema_version = {version + 1}")
    return str(sql)


def test_a_log_of_the_last_version_takes_a_suspension_and_keeps_every_entry(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """A hall upgraded mid-day: its log's table allowed only the older kinds, and SQLite
    refused the first suspension. The constraint is widened in place when the log opens;
    the day it holds replays as before."""
    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    issued = [q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, 0, i)) for i in range(3)]
    q.log.close()
    _schema_of(path, _KINDS, _OLD_KINDS)
    assert _OLD_KINDS in _schema_of(path, "", "")

    q = make_queue(path, core_cls)
    q.recover()
    assert q.submit("device", "supervisor", "alice", device("suspend"), at(9, 1)).record["ok"]
    q.log.close()
    assert _KINDS in _schema_of(path, "", "")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        kinds = [k for (k,) in db.execute("SELECT kind FROM entries ORDER BY seq")]
    assert kinds == ["day_open", "ticket", "ticket", "ticket", "device"]
    again = peek_queue(path, core_cls)
    again.recover()
    assert [t.number for t in again.engine.tickets] == [d.record["ticket"] for d in issued]
    assert again.engine.suspended == {"pi-d1": at(9, 1)}


@pytest.mark.broker
async def test_a_suspended_dispenser_prints_why_and_keeps_what_it_printed_offline(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real dispenser agent on its simulated keypad and printer: suspended, a key press
    prints a notice, not an offline ticket; a ticket it printed offline meanwhile (its
    coordinator out of reach) is held, not dropped, and joins the queue once resumed."""
    caplog.set_level(logging.INFO, logger="hallq")
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with running(cfg, tmp_path / "log.sqlite", clock) as coordinator:
        async with agent(cfg, "pi-d1", tmp_path, clock) as (devices, printers):
            keypad_bus, keypad = devices["keys-1"]
            printer = printers["printer-1"]
            await until(lambda: ("pi-d1", "invoice") in coordinator.engine.leases, 15)
            keypad_bus.press(keypad, 2)  # invoice
            await printer.wait_for(lambda: len(printer.tickets) == 1, timeout=15)
            assert "B001" in printer.tickets[0].text

            done = await coordinator.execute(
                "device", "supervisor", "alice", device("suspend"), reply=False
            )
            assert done.record["ok"]
            keypad_bus.press(keypad, 2)
            await printer.wait_for(lambda: len(printer.tickets) == 2, timeout=15)
            assert "本机已停用，请到其他取号机取号" in printer.tickets[1].text

            mosquitto.stop()  # out of reach: it prints from its lease, after the suspension
            clock.now += 60
            keypad_bus.press(keypad, 2)
            await printer.wait_for(lambda: len(printer.tickets) == 3, timeout=30)
            found = re.search(r"B\d{3}", printer.tickets[2].text)
            assert found is not None, printer.tickets[2].text
            number = found.group()
            mosquitto.start()
            held = f"replay of {number} not kept yet: device_suspended"
            await until(lambda: held in caplog.text, 30)
            assert number not in coordinator.engine.by_number

            done = await coordinator.execute(
                "device", "supervisor", "alice", device("resume"), reply=False
            )
            assert done.record["ok"]
            keypad_bus.press(keypad, 2)  # online again, and its held replay goes with it
            await printer.wait_for(lambda: len(printer.tickets) == 4, timeout=15)
            await until(lambda: number in coordinator.engine.by_number, 15)
    issued = [t.number for t in coordinator.engine.tickets]
    assert sorted(issued) == ["B001", "B002", number], issued


async def until_status(cfg: Any, pi_d1: Callable[[Any], bool]) -> None:
    """Until pi-d1's row of `hallq status` (read from the broker) meets ``pi_d1``."""
    async with asyncio.timeout(15):
        while True:
            rows = {r.client: r for r in await collect_status(cfg, timeout=1, quiet=0.1)}
            if pi_d1(rows["pi-d1"]):
                return


@pytest.mark.broker
async def test_the_desk_suspends_a_flooding_dispenser_from_its_alert_and_voids_the_flood(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a supervisor does mid-shift when 取号过快 names a dispenser: 停用 on the alert,
    the flood's tickets voided with it, the device's requests refused over MQTT from then
    on, every step audited, and 恢复 brings it back."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url),
        coordinated_device(cfg, "dispenser", "pi-d1", tmp_path) as thief,
        aiohttp.ClientSession() as http,
    ):
        await thief.wait_connected(10)
        req = T.req("pi-d1")

        async def issue_one() -> Any:
            return await thief.request(req, issue(), timeout=10)

        # a window's command under a dispenser's login: its own software never sends that
        beyond = m.WindowAction(window=1, action="call")
        await thief.publish(T.cmd("window", "pi-d1"), beyond)
        await until(lambda: any(a["kind"] == "command_refused" for a in alerts_json(c)), 10)
        flood = [await issue_one() for _ in range(40)]
        # a kiosk's burst (security.issue_burst) is issued, the rest refused at this pace
        assert [r.ok for r in flood[:20]] == [True] * 20
        assert {r.error.code for r in flood[20:]} == {"issue_paced"}
        flood = flood[:20]
        auth = await supervisor_auth(http, url)

        async def desk() -> Any:
            async with http.get(f"{url}/api/supervisor/desk", headers=auth) as r:
                assert r.status == 200
                return await r.json()

        seen = await desk()
        offered = {a["kind"]: (a["suspend"], a["voids"]) for a in seen["alerts"]}
        # what the confirmation says suspending it would void (its last void_minutes)
        assert seen["void_minutes"] == 10
        assert offered == {"command_refused": ("pi-d1", 20), "issue_burst": ("pi-d1", 20)}
        texts = {a["kind"]: a["text"] for a in seen["alerts"]}
        assert texts["command_refused"] == (
            "pi-d1 (取号机) 以窗口机身份发来不属于它角色的指令, 已拒绝 (wrong_role): "
            "它自己的软件不会这样发"
        )

        viewer = await login(http, url, "viewer", VIEWER_PASSWORD)
        path = f"{url}/api/supervisor/devices/pi-d1"
        async with http.post(path, headers=viewer, json={"action": "suspend"}) as r:
            assert r.status == 403
        async with http.post(
            f"{url}/api/supervisor/devices/pi-x", headers=auth, json={"action": "suspend"}
        ) as r:
            assert r.status == 409
            assert (await r.json())["error"]["code"] == "unknown_device"
        async with http.post(path, headers=auth, json={"action": "halt"}) as r:
            assert r.status == 400
        suspend = {"action": "suspend", "void_minutes": 10}
        async with http.post(path, headers=auth, json=suspend) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["voided"] == 20
        assert all(c.engine.by_number[r.ticket.number].state == "voided" for r in flood)

        refused = [await issue_one() for _ in range(3)]
        assert [r.error.code for r in refused] == ["device_suspended"] * 3
        # the engineer's log says so, once a minute however much it sends
        said = [r for r in caplog.records if "suspended by a supervisor" in r.getMessage()]
        assert [r.getMessage().split()[0] for r in said] == ["dispenser/pi-d1"]
        seen = await desk()
        assert [(d["client"], d["role"], d["problem"]) for d in seen["devices"]][:1] == [
            ("pi-d1", "dispenser", "suspended")
        ]
        assert all(a["suspend"] is None for a in seen["alerts"])
        # and the field engineer's `hallq status` marks it
        await until_status(cfg, lambda row: row.health.startswith("suspended by a supervisor"))

        async with http.post(path, headers=auth, json={"action": "resume"}) as r:
            assert r.status == 200
        await until_status(cfg, lambda row: "suspended" not in row.health)
        clock.now += 2.0  # one ticket's worth at 30 a minute
        assert (await issue_one()).ok
        async with http.get(f"{url}/api/supervisor/audit", headers=auth) as r:
            entries = await r.json()
        done = [
            (e["action"], e["target"], e["ok"], e.get("detail"))
            for e in entries
            if e["target"] in ("device pi-d1", "device pi-x")
        ]
        assert sorted(done, key=str) == sorted(
            [
                ("suspend_device", "device pi-x", False, None),
                ("device", "device pi-d1", False, None),  # the body it could not read
                ("suspend_device", "device pi-d1", True, {"void_minutes": 10, "voided": 20}),
                ("resume_device", "device pi-d1", True, None),
            ],
            key=str,
        ), done


@pytest.mark.broker
async def test_the_desk_finishes_the_ticket_at_a_suspended_window_pi_s_counter(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Window 1's Pi is suspended with a taxpayer at its counter: its pad cannot press 办结,
    and a window with someone at it cannot be closed. The desk offers 办结 on a window with
    someone at it, says whom it ends, and then the window can close."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        coordinated_device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        coordinated_device(cfg, "window", "pi-w1", tmp_path) as pad,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        await pad.wait_connected(10)
        assert (await dispenser.request(T.req("pi-d1"), issue(), timeout=10)).ok
        call = m.WindowAction(window=1, action="call")
        assert (await pad.request(T.cmd("window", "pi-w1"), call, timeout=10)).ok
        auth = await supervisor_auth(http, url)

        async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(f"{url}/api/supervisor/{path}", headers=auth, json=body) as r:
                return r.status, await r.json()

        async def window_1() -> Any:
            async with http.get(f"{url}/api/supervisor/desk", headers=auth) as r:
                return next(w for w in (await r.json())["windows"] if w["window"] == 1)

        # what its own software never sends: a ticket request under the window Pi's login
        await pad.publish(T.req("pi-w1"), issue())

        async def offered() -> dict[str, Any]:
            async with http.get(f"{url}/api/supervisor/desk", headers=auth) as r:
                alerts = (await r.json())["alerts"]
            return {a["suspend"]: a["pauses"] for a in alerts if a["kind"] == "command_refused"}

        await until(lambda: any(a["kind"] == "command_refused" for a in alerts_json(c)), 10)
        assert await offered() == {"pi-w1": [1, 2]}  # what the confirmation says it pauses
        status, done = await post("devices/pi-w1", {"action": "suspend"})
        # its pads cannot call any more: an open window would count in every estimate
        assert (status, done["paused"]) == (200, [1, 2])
        assert c.engine.windows[1].status == "paused"
        finish = m.Finish(window=1, action="finish")
        reply = await pad.request(T.cmd("window", "pi-w1"), finish, timeout=10)
        assert reply.error is not None
        assert reply.error.code == REFUSED
        seen = await window_1()
        assert (seen["ticket"], seen["actions"]) == ("A001", ["resume", "close", "finish"])
        status, said = await post("windows/1/impact", {"action": "close"})
        assert (status, said["blocked"]) == (200, False)  # it closes once A001 is done
        assert said["text"].endswith("办完后关窗"), said
        status, said = await post("windows/1/impact", {"action": "finish"})
        assert (status, said["blocked"]) == (200, False)
        assert said["text"].startswith("结束 A001 (申报纳税) 的办理"), said
        assert said["lines"] == [
            "A001 叫号已 0 分钟, 尚未开始办理",
            "办结后计为已办理; 纳税人未到请在窗口过号",
        ]

        status, done = await post("windows/1", {"action": "finish"})
        assert (status, done["ok"]) == (200, True), done
        assert c.engine.by_number["A001"].state == TicketState.DONE
        seen = await window_1()
        assert (seen["ticket"], seen["actions"]) == (None, ["resume", "close"])
        status, again = await post("windows/1", {"action": "finish"})
        assert (status, again["error"]["code"]) == (409, "no_current_ticket")
        assert "1号窗口现在没有人在办理" in again["error"]["message"]
        assert (await post("windows/1", {"action": "close"}))[0] == 200
        async with http.get(f"{url}/api/supervisor/audit", headers=auth) as r:
            entries = await r.json()
        assert [(e["action"], e["ok"]) for e in entries if e["target"] == "window 1"][-2:] in (
            [("finish", True), ("close", True)],
            [("close", True), ("finish", True)],
        )


@pytest.mark.broker
async def test_an_offline_ticket_printed_while_its_dispenser_was_connected_is_named(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offline ticket takes the place its print time says, and that time is the sender's
    word: a login in other hands backdates them to the head of the queue. A dispenser
    prints offline only when cut off (presence shows it) or answered late (its request
    was heard). One claimed printed while its dispenser was connected all along, for a
    request never heard, is named to the supervisors; those with an explanation are not."""
    monkeypatch.setattr(authz, "ALERT_EVERY_S", 0.0)  # each replay's alert, if any
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    numbers = iter(range(1000))

    def replay(printed: float, supersedes: str | None = None) -> m.IssueRequest:
        return m.IssueRequest(
            kind="issue",
            service="invoice",
            offline=m.OfflineIssue(
                number=f"B{first + next(numbers):03d}",
                issued_at=_utc(printed),
                supersedes=supersedes or new_ulid(),
            ),
        )

    async def named(d1: Any, explained: m.IssueRequest | None) -> str:
        """Send ``explained`` (no alert), then one made up (its alert): the alerts' text."""
        if explained is not None:
            assert (await d1.request(T.req("pi-d1"), explained, timeout=10)).ok
        made_up = replay(clock.now - 300)  # 5 minutes ago, connected all along
        assert (await d1.request(T.req("pi-d1"), made_up, timeout=10)).ok
        assert made_up.offline is not None
        made_up_number = made_up.offline.number

        await until(lambda: made_up_number in alerted(), 10)
        return alerted()

    def alerted() -> str:
        return "\n".join(e.message for e in alerts_of(coordinator, "offline_while_connected"))

    async with running(cfg, tmp_path / "log.sqlite", clock) as coordinator:
        async with coordinated_device(cfg, "dispenser", "pi-d1", tmp_path) as d1:
            await d1.wait_connected(10)
            await until(
                lambda: bool((d := coordinator.devices.seen("dispenser", "pi-d1")) and d.online)
            )
            lease = m.LeaseRequest(kind="lease", service="invoice", size=10)
            first = (await d1.request(T.req("pi-d1"), lease, timeout=10)).first
            heard = m.IssueRequest(kind="issue", service="invoice")
            assert (await d1.request(T.req("pi-d1"), heard, timeout=10)).ok
            clock.now += 600
            # answered late, or refused: its request was heard here
            late = replay(clock.now - 300, supersedes=heard.id)
            said = await named(d1, late)
            assert late.offline is not None
            assert late.offline.number not in said
            assert "pi-d1" in said
            offered = {a.kind: a.suspend for a in desk_alerts(coordinator, AlertBook())}
            assert offered["offline_while_connected"] == "pi-d1"
        cut_off_at = clock.now  # its goodbye: offline
        clock.now += 600
        async with coordinated_device(cfg, "dispenser", "pi-d1", tmp_path) as d1:
            await d1.wait_connected(10)
            await until(
                lambda: bool((d := coordinator.devices.seen("dispenser", "pi-d1")) and d.online)
            )
            clock.now += 600
            # printed while it was away: what offline tickets are for
            away = replay(cut_off_at + 300)
            said = await named(d1, away)
            assert away.offline is not None
            assert away.offline.number not in said
            # printed before anyone could take a ticket today: queued as of the opening
            ancient = replay(dt.datetime(1970, 1, 1, tzinfo=dt.UTC).timestamp())
            assert (await d1.request(T.req("pi-d1"), ancient, timeout=10)).ok
            assert ancient.offline is not None
            number = ancient.offline.number
            await until(lambda: number in alerted(), 10)
            assert f"{number}, 称 1970-01-01T00:00+00:00 打印, 不在今天开门之后" in alerted()
            opening = cfg.hall.open_hours[0][0]
            placed = dt.datetime.fromtimestamp(
                coordinator.engine.by_number[number].issued_at, cfg.hall.tzinfo
            )
            assert placed.time() == opening


def test_a_supervisor_console_s_login_is_suspended_like_a_device_s(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """A console (security.supervisor_clients) sends any window command over MQTT: its
    password in other hands cancels tickets by the dozen. It is suspended like a device;
    the desk's own users, also supervisors, are not (they resume it)."""
    text = small_hall_text() + '\n[security]\nsupervisor_clients = ["desk-1"]\n'
    q = HallQueue(parse_config(text, "hall.toml"), EventLog(tmp_path / "log.sqlite"), core_cls)
    q.submit("ticket", "dispenser", "pi-d1", issue(), at(9))
    cancel = m.TicketAction(window=1, action="cancel", ticket="A001")
    done = q.submit("device", "supervisor", "alice", device("suspend", "desk-1"), at(9, 1))
    assert done.record["ok"]
    assert code(q.submit("window", "supervisor", "desk-1", cancel, at(9, 2))) == REFUSED
    pause = m.WindowAction(window=2, action="pause")
    assert q.submit("window", "supervisor", "alice", pause, at(9, 3)).record["ok"]
    assert q.submit("device", "supervisor", "alice", device("resume", "desk-1"), at(9, 4)).record[
        "ok"
    ]
    again = m.TicketAction(window=1, action="cancel", ticket="A001")
    assert q.submit("window", "supervisor", "desk-1", again, at(9, 5)).record["ok"]


def test_no_desk_user_is_named_like_a_login_a_supervisor_can_suspend(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The desk's commands carry their user's name where a console's carry its client id:
    a desk user "desk-1" beside a console "desk-1" would be locked out of the desk when the
    console is suspended, and could not resume it. The hall file, `hallq user add` and the
    users file each refuse the name."""
    from click.testing import CliRunner

    from coordinator.web.users import Directory
    from hallq.config import load_config
    from hallq.errors import ConfigError
    from hallqctl.cli import main as cli

    from .test_web_helpers import users_toml

    consoles = '\n[security]\nsupervisor_clients = ["desk-1"]\n'
    for name, why in (("desk-1", "supervisor console"), ("pi-w1", "device's client id")):
        with pytest.raises(ConfigError) as refused:
            parse_config(
                small_hall_text() + consoles + "\n[web]\n" + users_toml({name: ("viewer", "x")}),
                "hall.toml",
            )
        assert "web.users[0].name (line " in str(refused.value)
        assert f"): desk user {name!r} is also a {why}" in str(refused.value)

    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(small_hall_text() + consoles + "\n[web]\n", encoding="utf-8")
    add = ["user", "add", "desk-1", "--role", "supervisor", "--password-stdin"]
    added = CliRunner().invoke(
        cli, [*add, "--config", str(hall_file)], input="a long enough password\n"
    )
    assert added.exit_code != 0
    assert "'desk-1' is also a supervisor console's client id" in added.output
    users_file = tmp_path / "hall.users.toml"
    assert not users_file.exists()

    users_file.write_text(
        users_toml({"desk-1": ("supervisor", "p"), "wang": ("viewer", "q")}, table="users"),
        encoding="utf-8",
    )
    directory = Directory(load_config(hall_file, environ={}))
    assert [u.name for u in directory.all()] == ["wang"]
    assert "user 'desk-1' is also a supervisor console's client id" in caplog.text
    before = users_file.read_bytes()
    passwd = ["user", "passwd", "desk-1", "--password-stdin", "--config", str(hall_file)]
    renewed = CliRunner().invoke(cli, passwd, input="another long password\n")
    assert renewed.exit_code != 0
    assert "the desk ignores this user: `hallq user remove desk-1`" in renewed.output
    assert users_file.read_bytes() == before
    removed = CliRunner().invoke(cli, ["user", "remove", "desk-1", "--config", str(hall_file)])
    assert removed.exit_code == 0, removed.output
    assert [u.name for u in Directory(load_config(hall_file, environ={})).all()] == ["wang"]


def console_hall(url: str, state: str) -> Any:
    """The web test hall with a supervisor console, desk-1, beside the desk's users."""
    cfg = web_hall(url, state)
    security = cfg.security.model_copy(update={"supervisor_clients": ["desk-1"]})
    return cfg.model_copy(update={"security": security})


@pytest.mark.broker
async def test_a_console_s_commands_are_in_the_desk_s_audit_log(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Who cancelled A001? A console's commands over MQTT are in the event log; the desk's
    audit log, where a supervisor looks, has them too (role console, from mqtt), refused
    ones included, and the desk's answer says when it has something new to read."""
    cfg = console_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url),
        coordinated_device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        coordinated_device(cfg, "supervisor", "desk-1", tmp_path) as console,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        await console.wait_connected(10)
        auth = await supervisor_auth(http, url)

        async def get(path: str) -> Any:
            async with http.get(f"{url}/api/supervisor/{path}", headers=auth) as r:
                assert r.status == 200
                return await r.json()

        before = (await get("desk"))["audit_last"]
        assert (await dispenser.request(T.req("pi-d1"), issue(), timeout=10)).ok
        topic = T.cmd("supervisor", "desk-1")
        cancel = m.TicketAction(window=1, action="cancel", ticket="A001")
        assert (await console.request(topic, cancel, timeout=10)).ok
        again = m.TicketAction(window=1, action="cancel", ticket="A001")
        refused = await console.request(topic, again, timeout=10)
        assert refused.error is not None
        assert (await get("desk"))["audit_last"] == before + 2
        entries = await get("audit")
        assert [e["client"] for e in await get("audit?console=1")] == ["mqtt", "mqtt"]
        assert "mqtt" not in [e["client"] for e in await get("audit?console=0")]
        async with http.get(f"{url}/api/supervisor/audit?console=2", headers=auth) as r:
            assert r.status == 400
        keys = ("user", "role", "action", "action_zh", "target", "ok", "result", "detail")
        mine = [[e[k] for k in keys] for e in entries if e["client"] == "mqtt"]
        who = ["desk-1", "console", "cancel", "取消号", "window 1"]
        assert mine == [
            [*who, False, refused.error.code, {"ticket": "A001"}],
            [*who, True, None, {"ticket": "A001"}],
        ]


@pytest.mark.broker
async def test_a_console_acting_faster_than_a_person_is_named_with_an_offer_to_suspend(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A person at a supervisor console does a few commands a minute; its password in a
    script does dozens a second (cancelling tickets by number). More than 30 within a
    minute are named to the desk (主管台操作过快), which offers 停用."""
    text = small_hall_text(mosquitto.url, str(tmp_path / "state"))
    cfg = parse_config(text + '\n[security]\nsupervisor_clients = ["desk-1"]\n', "hall.toml")
    async with (
        running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator,
        coordinated_device(cfg, "supervisor", "desk-1", tmp_path) as console,
    ):
        await console.wait_connected(10)
        topic = T.cmd("supervisor", "desk-1")
        for i in range(31):
            # (a new command each time: pausing twice would be refused)
            if i % 2 == 0:
                command = m.WindowAction(window=2, action="pause")
            else:
                command = m.WindowAction(window=2, action="resume")
            reply = await console.request(topic, command, timeout=10)
            assert reply.ok, reply

        def offered() -> dict[str, str | None]:
            return {a.kind: a.suspend for a in desk_alerts(coordinator, AlertBook())}

        await until(lambda: "console_burst" in offered(), 10)
        assert offered()["console_burst"] == "desk-1"
