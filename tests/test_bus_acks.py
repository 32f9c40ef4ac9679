"""Acknowledging after the handler (``Session(ack_after_handler=True)``, the coordinator's
default): a message whose handler never finished comes back from the broker, every QoS 1
message is acknowledged exactly once and in arrival order, and a coordinator killed in the
middle of a command logs it exactly once after its restart. The kills are real SIGKILLs
(tests/crash_proc.py); each "ack-on-arrival" case is the old behaviour, showing the same
test fails without the flag."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTErrorCode

from hallq import messages as m
from hallq.bus import Incoming, Session
from hallq.config import BrokerConfig
from hallq.topics import HallTopics, TopicParts

from .conftest import Inbox, Mosquitto
from .coordinated import device
from .halls import small_hall, small_hall_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
T = HallTopics("liwan")
FLAG = pytest.mark.parametrize(
    "ack_after_handler", [True, False], ids=["ack-after-handler", "ack-on-arrival"]
)
PROTOCOL = pytest.mark.parametrize("protocol", ["5", "3.1.1"])


def spawn(*args: str, stderr: Path) -> subprocess.Popen[str]:
    with stderr.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True
        )


async def next_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:  # noqa: ASYNC109  test helper: each test states its bound
    assert proc.stdout is not None
    return (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)).strip()


async def killed(proc: subprocess.Popen[str]) -> bool:
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), 20) == -signal.SIGKILL


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.mark.broker
@PROTOCOL
@FLAG
async def test_a_message_whose_handler_never_returned_is_delivered_again_after_a_restart(
    mosquitto: Mosquitto,
    make_session: Callable[..., Session],
    inbox: type[Inbox],
    tmp_path: Path,
    protocol: str,
    ack_after_handler: bool,
) -> None:
    state = tmp_path / "coord-state"
    proc = spawn(
        str(HERE / "crash_proc.py"),
        "session",
        mosquitto.url,
        "coord",
        str(state),
        protocol,
        "on" if ack_after_handler else "off",
        stderr=tmp_path / "proc.log",
    )
    try:
        assert await next_line(proc) == "ready"
        async with make_session("window", "win-01") as pad:
            await pad.wait_connected(10)
            crashed = m.WindowAction(window=1, action="call")
            await pad.publish(T.cmd("window", "win-01"), crashed)
            assert await next_line(proc) == f"handling {crashed.id}"
            assert await killed(proc)

            got = inbox()
            async with make_session(
                "coordinator",
                "coord",
                protocol=protocol,
                state_dir=state,
                ack_after_handler=ack_after_handler,
            ) as coord:
                await coord.subscribe(T.every("cmd", "window"), got)
                # queued behind anything still in flight in coord's broker session
                marker = m.WindowAction(window=1, action="recall")
                await pad.publish(T.cmd("window", "win-01"), marker)
                await got.wait_for(lambda ps: any(p.id == marker.id for p in ps))
    finally:
        stop(proc)
    handled = [p.id for p in got.payloads]
    if ack_after_handler:
        assert handled == [crashed.id, marker.id], "the broker must hand the command back"
    else:
        assert handled == [marker.id], "acked on arrival: the command is gone"


class Trace:
    """What the coordinator session's paho client did, in order: ("arrived", mid) for each
    QoS 1 PUBLISH received, ("dispatched", mid) when Session._dispatch returned for it,
    ("acked", mid) for each PUBACK queued for sending."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self._changed = asyncio.Event()

    def add(self, kind: str, mid: int) -> None:
        self.events.append((kind, mid))
        self._changed.set()

    def mids(self, kind: str) -> list[int]:
        return [mid for k, mid in self.events if k == kind]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:  # noqa: ASYNC109  test helper: each test states its bound
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@pytest.mark.broker
@PROTOCOL
@FLAG
async def test_every_qos1_message_is_acked_once_in_arrival_order_after_its_dispatch(
    mosquitto: Mosquitto,
    make_session: Callable[..., Session],
    inbox: type[Inbox],
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    ack_after_handler: bool,
) -> None:
    trace = Trace()
    on_message, send_puback = paho.Client._handle_on_message, paho.Client._send_puback

    def arrived(self: paho.Client, message: paho.MQTTMessage) -> None:
        if self._client_id == b"coord" and message.qos:
            trace.add("arrived", message.mid)
        on_message(self, message)

    def puback(self: paho.Client, mid: int) -> MQTTErrorCode:
        if self._client_id == b"coord":
            trace.add("acked", mid)
        return send_puback(self, mid)

    monkeypatch.setattr(paho.Client, "_handle_on_message", arrived)
    monkeypatch.setattr(paho.Client, "_send_puback", puback)

    handled = inbox()
    topic = T.cmd("window", "win-05")
    good = [m.WindowAction(window=5, action="call") for _ in range(3)]
    async with make_session(
        "coordinator", "coord", protocol=protocol, ack_after_handler=ack_after_handler
    ) as coord:
        dispatch = coord._dispatch

        async def traced(message: aiomqtt.Message) -> bool:
            kept = await dispatch(message)
            if message.qos:
                trace.add("dispatched", message.mid)
            return kept

        coord._dispatch = traced  # type: ignore[method-assign]

        async def handle(incoming: Incoming) -> None:
            if incoming.payload.action == "recall":
                raise RuntimeError("handler bug")
            # a broker round trip inside the handler: later messages arrive meanwhile
            await coord.publish(
                T.event("call"),
                m.CallEvent(ticket="A001", service="tax-filing", window=5, zone="hall-1"),
            )
            await handled(incoming)

        await coord.subscribe(T.every("cmd", "window"), handle)
        await coord.wait_connected(10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as raw:
            for payload, qos in [
                (m.encode(good[0]), 1),
                (b"\xff\xfe not json", 1),
                (m.encode(good[0]).replace(b'"window":5', b'"window":"5"'), 1),
                (m.encode(m.WindowAction(window=5, action="recall")), 1),
                (m.encode(good[1]), 0),
                (b"{" + b" " * 20000 + b"}", 1),
                (m.encode(good[2]), 1),
            ]:
                await raw.publish(topic, payload, qos=qos)
        await handled.wait_for(lambda ps: len(ps) == 3)
        await trace.wait_for(
            lambda: (
                sorted(trace.mids("acked")) == sorted(trace.mids("arrived"))
                and len(trace.mids("arrived")) >= 6
            )
        )
        events = list(trace.events)

    arrived_mids = [mid for kind, mid in events if kind == "arrived"]
    assert len(arrived_mids) >= 6  # the six QoS 1 commands and the session's own status
    assert [mid for kind, mid in events if kind == "acked"] == arrived_mids, (
        "each QoS 1 message acked exactly once, in the order it arrived"
    )
    done = [(kind, mid) for kind, mid in events if kind != "arrived"]
    if ack_after_handler:
        assert done == [(k, mid) for mid in arrived_mids for k in ("dispatched", "acked")]
    else:
        assert all(
            done.index(("acked", mid)) < done.index(("dispatched", mid)) for mid in arrived_mids
        )

    # and the broker agrees: nothing (not the poison messages either) is delivered again
    again = inbox()
    async with make_session(
        "coordinator", "coord", protocol=protocol, ack_after_handler=ack_after_handler
    ) as coord:
        await coord.subscribe(T.every("cmd", "window"), again)
        marker = m.WindowAction(window=5, action="recall")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as raw:
            await raw.publish(topic, m.encode(marker), qos=1)
        payloads = await again.wait_for(lambda ps: bool(ps))
    assert payloads == [marker]


@pytest.mark.broker
@pytest.mark.parametrize(
    ("point", "ack_after_handler"),
    [
        ("before_log", True),
        ("after_log", True),
        ("before_log", False),
    ],
    ids=["killed-before-log", "killed-after-log", "killed-before-log-ack-on-arrival"],
)
async def test_a_coordinator_killed_inside_a_command_logs_it_once_after_restarting(
    mosquitto: Mosquitto,
    tmp_path: Path,
    point: str,
    ack_after_handler: bool,
) -> None:
    config = tmp_path / "hall.toml"
    config.write_text(
        small_hall_text(mosquitto.url, str(tmp_path / "state"), all_day=True, http_port=0)
    )
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), all_day=True)
    log_path = tmp_path / "log.sqlite"
    err = tmp_path / "coordinator.log"
    topics = HallTopics(cfg.hall.id)
    crashed = m.IssueRequest(kind="issue", service="tax-filing")
    proc = spawn(
        str(HERE / "crash_proc.py"),
        "coordinator",
        str(config),
        str(log_path),
        crashed.id,
        point,
        "on" if ack_after_handler else "off",
        stderr=err,
    )
    procs = [proc]
    try:
        assert await next_line(proc) == "ready", err.read_text()
        async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
            await dispenser.wait_connected(10)
            # no retry: only the broker can bring this request back to the coordinator
            first = asyncio.create_task(dispenser.request(topics.req("pi-d1"), crashed, timeout=60))
            said = "handling" if point == "before_log" else "logged"
            assert await next_line(proc) == f"{said} {crashed.id}"
            assert await killed(proc)
            # the real service, as systemd restarts it (ack after handler is its default)
            procs.append(
                spawn(
                    "-m",
                    "hallqctl.cli",
                    "coordinator",
                    "--config",
                    str(config),
                    "--log",
                    str(log_path),
                    "--dispatch",
                    "pure",
                    stderr=err,
                )
            )
            marker = await dispenser.request(
                topics.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=30
            )
            if ack_after_handler:
                reply = await asyncio.wait_for(first, 10)
            else:
                # the marker was queued behind anything the broker still had for the
                # coordinator, and its reply is in: the crashed request is not coming
                assert not first.done()
                first.cancel()
                reply = None
    finally:
        for p in procs:
            stop(p)
    with sqlite3.connect(log_path) as db:
        logged = dict(
            db.execute(
                "SELECT cmd_id, json_extract(result, '$.info.number') FROM entries "
                "WHERE kind = 'ticket'"
            ).fetchall()
        )
        rows = db.execute(
            "SELECT count(*) FROM entries WHERE cmd_id = ?", (crashed.id,)
        ).fetchone()[0]
    assert marker.ok
    if ack_after_handler:
        assert rows == 1
        assert reply is not None
        assert reply.ok
        assert logged == {crashed.id: "A001", marker.corr: "A002"}
        assert reply.ticket.number == "A001"
        assert marker.ticket.number == "A002"
    else:
        assert rows == 0, "acked on arrival and killed before the log: the command is lost"
        assert logged == {marker.corr: "A001"}


async def test_ack_after_handler_on_amqtt_answers_and_survives_bad_input(
    amqtt_url: str, tmp_path: Path
) -> None:
    """amqtt (MQTT 3.1.1, the demo's fallback broker) takes the late PUBACKs. It drops a
    message still unacknowledged when the connection goes, so it never redelivers one:
    there the flag does no good, and no harm."""

    def session(role: str, client: str, **kw: Any) -> Session:
        return Session(
            BrokerConfig(url=amqtt_url),
            hall="liwan",
            role=role,
            client_id=client,
            state_dir=tmp_path / client,
            op_timeout=1.0,
            backoff_initial=0.05,
            **kw,
        )

    seen: list[str] = []
    async with (
        session("coordinator", "coord", ack_after_handler=True) as coord,
        session("dispenser", "d1") as disp,
    ):

        async def answer(incoming: Incoming) -> None:
            req = incoming.payload
            seen.append(req.id)
            if req.service == "boom":
                raise RuntimeError("handler bug")
            await coord.publish(
                T.reply("dispenser", "d1"),
                m.IssueReply(
                    kind="issue",
                    corr=req.id,
                    ok=False,
                    error=m.Rejection(code="closed", message="已停止取号"),
                ),
            )

        await coord.subscribe(T.every("req", "dispenser"), answer)
        await coord.wait_connected(15)
        await disp.wait_connected(15)
        await disp.publish(T.req("d1"), m.IssueRequest(kind="issue", service="boom"))
        replies = [
            await disp.request(T.req("d1"), m.IssueRequest(kind="issue", service="a"), timeout=10)
            for _ in range(5)
        ]
    assert [r.error.code for r in replies] == ["closed"] * 5
    assert len(seen) == len(set(seen)) == 6, "each message handled once"
    assert coord._protocol is aiomqtt.ProtocolVersion.V311


@pytest.mark.broker
async def test_a_message_that_hits_a_bug_in_the_session_is_acked_and_dropped(
    mosquitto: Mosquitto,
    make_session: Callable[..., Session],
    inbox: type[Inbox],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug past the handlers' guard costs that message only: it is logged and
    acknowledged, and the session serves on. Reconnecting instead would let one client
    keep the coordinator flapping (issue 12), and an unacknowledged message would come
    back after every reconnect."""
    got = inbox()
    poison = m.WindowAction(window=5, action="call")
    async with (
        make_session("coordinator", "coord", ack_after_handler=True) as coord,
        make_session("window", "win-05") as pad,
    ):
        fresh = coord._fresh

        def broken(topic: str, parts: TopicParts, payload: Any) -> bool:
            if getattr(payload, "id", None) == poison.id:
                raise RuntimeError("session bug")
            return fresh(topic, parts, payload)

        coord._fresh = broken  # type: ignore[method-assign]
        await coord.subscribe(T.every("cmd", "window"), got)
        await coord.wait_connected(10)
        await pad.wait_connected(10)
        await pad.publish(T.cmd("window", "win-05"), poison)
        marker = m.WindowAction(window=5, action="recall")
        await pad.publish(T.cmd("window", "win-05"), marker)
        payloads = await got.wait_for(lambda ps: bool(ps))
        assert coord.connects == 1
    assert payloads == [marker]
    assert "message on hallq/v1/liwan/window/win-05/cmd dropped" in caplog.text
    assert "session bug" in caplog.text
