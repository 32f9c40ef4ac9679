"""The attack suite: the hall as `hallq provision` configures it, attacked from the inside.

A real Mosquitto runs the generated config (TLS, passwords, ACL, login bound to client id)
and a real coordinator serves the small hall. Each device identity -- a window Pi, a
dispenser, a board, a supervisor console -- uses its own valid credentials to try every
other client's topics, the coordinator's state, events and presence, its own level under
other roles, commands for windows and services not its own, retained commands, replayed
and missing ids, hostile payloads; outsiders try no credentials, wrong ones, and a stolen
login under the coordinator's client id; one device floods.

Every attempt ends in one of: denied by the broker (CONNACK or PUBACK "not authorised"),
rejected by the coordinator (an error reply or error report naming the reason), or an
effect. The suite fails on any effect, and on any change of the queue, the event log or the
coordinator's session. The report is printed (``-s``) and written to
``$HALLQ_ARTIFACTS/attack-report.json`` when that is set; SECURITY.md quotes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from coordinator.suspension import DeviceCommand
from coordinator.web.desk import AlertBook
from coordinator.web.views import alerts_json, desk_alerts
from edge.agent import make_session
from edge.health import Health
from hallq import bus
from hallq import messages as m
from hallq.bus import Session
from hallq.config import HallConfig, parse_config
from hallq.contract import CLIENT_TOPICS
from hallq.topics import HallTopics, Role
from hallq.ulid import new_ulid
from hallqctl.mosquitto import Mosquitto, free_port
from hallqctl.provision import provision

from .conftest import until
from .coordinated import FakeClock, running
from .halls import small_hall_text

pytestmark = pytest.mark.broker

HALL = "test-hall"
T = HallTopics(HALL)
NOT_AUTHORISED = 0x87
ID_NUMBER = "11010519491231002X"
ROLES = {
    "coordinator": Role.COORDINATOR,
    "pi-w1": Role.WINDOW,
    "pi-d1": Role.DISPENSER,
    "pi-b1": Role.BOARD,
    "desk-1": Role.SUPERVISOR,
}
# the city bridge's login (``hallq bridge``) has no role: it may only read the public
# summaries and write under city/, so every command, state and event topic is foreign to it
ATTACKERS = ("pi-w1", "pi-d1", "pi-b1", "desk-1", "city-bridge")


def attack_hall(port: int, out: Path, state: Path) -> HallConfig:
    text = small_hall_text(state_dir=str(state), all_day=True)
    # the dispenser's keys serve two of the three services: "green" is not its to issue
    text = text.replace(
        'services = ["tax-filing", "invoice", "green"]', 'services = ["tax-filing", "invoice"]'
    )
    text += (
        f'\n[broker]\nurl = "mqtts://127.0.0.1:{port}"\nkeepalive = 5\n'
        f'credentials_dir = "{out}/devices"\n'
        '\n[security]\nsupervisor_clients = ["desk-1"]\n'
        "client_rate_per_s = 50\nclient_burst = 400\n"
    )
    return parse_config(text, "attack-hall.toml")


class Client:
    """A raw paho MQTT 5 client, so the broker's reason codes are seen as they are."""

    def __init__(
        self,
        port: int,
        ca: Path,
        user: str | None,
        password: str | None,
        client_id: str | None = None,
        *,
        v5: bool = True,
    ) -> None:
        self.port = port
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or user or "",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.tls_set(ca_certs=str(ca))
        self.cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.got: list[tuple[str, bytes, bool]] = []
        self.cut_off: list[ReasonCode] = []  # why the broker disconnected it
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            self.connack = rc
            self.cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            self.cut_off.append(rc)
            self.cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:  # noqa: ASYNC109  test helper: each test states its bound
        def block() -> bool:
            with self.cond:
                return self.cond.wait_for(predicate, timeout)

        return await asyncio.to_thread(block)

    async def connect(self) -> int:
        """The CONNACK reason code (0 accepted; >= 0x80 refused)."""
        try:
            self.c.connect("127.0.0.1", self.port, keepalive=10)
        except OSError:
            return -1
        self.c.loop_start()
        await self.wait(lambda: self.connack is not None, 10)
        assert self.connack is not None, "no CONNACK"
        return int(self.connack.value)

    async def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        await self.wait(lambda: info.mid in self.acks, 10)
        assert info.mid in self.acks, (topic, self.c.is_connected(), info.rc)
        return int(self.acks[info.mid].value)

    def close(self) -> None:
        """Also unhooks our callbacks: bound methods make a cycle of this and paho's
        client, and the collector finalizes a cycle in no set order, so paho's wake-up
        sockets could be finalized before paho closed them (a ResourceWarning, an error
        here, in whichever test is running then). Without the cycle paho's client is
        freed as the test drops it, closing them first."""
        self.c.disconnect()
        self.c.loop_stop()
        self.c.on_connect = self.c.on_publish = self.c.on_message = None
        self.c.on_disconnect = None


@dataclass
class Report:
    attempts: int = 0
    denied_by_broker: int = 0
    rejected_by_coordinator: int = 0
    with_effect: int = 0
    effects: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    by_attacker: dict[str, Counter[str]] = field(default_factory=dict)

    def note(self, who: str, outcome: str, what: str, reason: str = "") -> None:
        self.attempts += 1
        counts = self.by_attacker.setdefault(who, Counter())
        counts[outcome] += 1
        if outcome == "broker":
            self.denied_by_broker += 1
        elif outcome == "coordinator":
            self.rejected_by_coordinator += 1
            self.reasons[reason] += 1
        else:
            self.with_effect += 1
            self.effects.append(f"{who}: {what}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "denied_by_broker": self.denied_by_broker,
            "rejected_by_coordinator": self.rejected_by_coordinator,
            "with_effect": self.with_effect,
            "effects": self.effects,
            "coordinator_reasons": dict(self.reasons),
            "by_attacker": {k: dict(v) for k, v in self.by_attacker.items()},
        }


def forged(topic: str) -> tuple[bytes, bool]:
    """A well-formed payload for ``topic`` (what a subscriber would act on), and whether it
    goes out retained as the real one does."""
    parts = topic.split("/")
    kind = parts[3] if parts[3] in ("state", "event") else parts[5]
    big = 10**12
    message: m.Message
    build: dict[str, Callable[[], m.Message]]
    if parts[3] == "state":
        build = {
            "window": lambda: m.WindowState(
                rev=big, window=1, zone="hall-1", status=m.WindowStatus.CLOSED
            ),
            "queue": lambda: m.QueueState(rev=big, service="invoice", waiting=999),
            "board": lambda: m.BoardState(rev=big, notice="forged"),
        }
        message = build.get(parts[4], lambda: m.BoardState(rev=big, notice="forged"))()
        return m.encode(message), True
    if parts[3] == "event":
        build = {
            "call": lambda: m.CallEvent(
                ticket="A999", service="tax-filing", window=1, zone="hall-1"
            ),
            "ticket": lambda: m.TicketEvent(
                ticket="A999", service="tax-filing", state=m.TicketState.NO_SHOW
            ),
        }
        message = build.get(
            parts[4], lambda: m.AlertEvent(severity="critical", kind="forged", message="forged")
        )()
        return m.encode(message), False
    role, client = parts[3], parts[4]
    if kind == "cmd":
        return m.encode(m.WindowAction(window=1, action="close")), False
    if kind == "req":
        return m.encode(m.IssueRequest(kind="issue", service="tax-filing")), False
    if kind == "reply":
        return m.encode(m.CommandReply(kind="command", corr=new_ulid(), ok=True)), False
    if kind == "status":
        return m.encode(m.Presence(state="offline", boot=big, role=role, client=client)), True
    if kind == "health":
        return m.encode(m.DeviceHealth(rev=big, components=[])), True
    return m.encode(m.ErrorReport(topic=topic, code="invalid_payload", message="forged")), False


def foreign_topics(attacker: str) -> list[str]:
    """Every topic this identity may not publish: other clients' levels, its own id under
    other roles, its own level's topics its role does not send, the coordinator's state
    and events."""
    role = ROLES.get(attacker)
    topics = []
    for client, client_role in ROLES.items():
        for action, spec in CLIENT_TOPICS.items():
            for as_role in (client_role, *(r for r in Role if r is not client_role)):
                if as_role not in spec.roles:
                    continue
                own = client == attacker and as_role is role
                if client != attacker and as_role is not client_role:
                    continue
                if own and not spec.by_coordinator:
                    continue  # its own topic: the broker rightly lets it through
                topics.append(T.client(as_role, client, action))
    topics += [
        T.window_state(1),
        T.queue_state("invoice"),
        T.board_state(),
        T.stats_state(),
        T.comfort_state(),
        T.event("call"),
        T.event("ticket"),
        T.event("alert"),
    ]
    return list(dict.fromkeys(topics))


def fingerprint(coordinator: Any) -> tuple[Any, ...]:
    engine = coordinator.engine
    return (
        coordinator.queue.seq,
        len(engine.tickets),
        tuple(
            (
                n,
                w.status.value,
                w.current.number if w.current else None,
                tuple(sorted(w.skills.items())),
            )
            for n, w in sorted(engine.windows.items())
        ),
    )


def reply_to(client: Client, topic: str, corr: str) -> Any:
    for got_topic, payload, _ in client.got:
        if got_topic == topic:
            reply = m.decode(m.Reply, payload)
            if reply.corr == corr:
                return reply
    return None


async def test_the_provisioned_hall_gives_nothing_to_an_attacker(tmp_path: Path) -> None:
    started = time.monotonic()
    port, out = free_port(), tmp_path / "provision"
    cfg = attack_hall(port, out, tmp_path / "state")
    provision(cfg, out, port=port, bind="127.0.0.1", run_as="root")
    ca = out / "devices" / "coordinator" / "ca.crt"
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Mosquitto(workdir, config=out / "broker" / "mosquitto.conf", port=port)
    broker.start()

    def password(client: str) -> str:
        return (out / "devices" / client / "password").read_text().strip()

    report = Report()
    clients: dict[str, Client] = {}
    try:
        async with running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator:
            session = coordinator.session
            assert session is not None
            assert session.connects == 1
            watch = clients["operator"] = Client(port, ca, "operator", password("operator"))
            assert await watch.connect() == 0
            await watch.subscribe(f"hallq/v1/{HALL}/#")

            async def log_in(name: str) -> Client:
                client = clients[name] = Client(port, ca, name, password(name))
                assert await client.connect() == 0, f"{name} cannot log in"
                await client.subscribe(f"hallq/v1/{HALL}/#")
                return client

            for name in ATTACKERS:
                await log_in(name)

            # controls: the same identities' legitimate commands do have an effect
            d1, w1, desk = clients["pi-d1"], clients["pi-w1"], clients["desk-1"]
            issue = m.IssueRequest(kind="issue", service="invoice")
            assert await d1.publish(T.req("pi-d1"), m.encode(issue)) == 0
            assert await d1.wait(lambda: reply_to(d1, T.reply("dispenser", "pi-d1"), issue.id))
            assert reply_to(d1, T.reply("dispenser", "pi-d1"), issue.id).ok
            control = m.WindowAction(window=3, action="pause")
            assert await desk.publish(T.cmd("supervisor", "desk-1"), m.encode(control)) == 0
            assert await desk.wait(
                lambda: reply_to(desk, T.reply("supervisor", "desk-1"), control.id)
            )
            assert reply_to(desk, T.reply("supervisor", "desk-1"), control.id).ok
            before = fingerprint(coordinator)

            # 1. other roles' topics, other clients' topics, state, events, presence
            for name in ATTACKERS:
                attacker = clients[name]
                for topic in foreign_topics(name):
                    payload, retain = forged(topic)
                    rc = await attacker.publish(topic, payload, retain=retain)
                    if rc == NOT_AUTHORISED:
                        report.note(name, "broker", topic)
                    else:
                        report.note(name, "effect", f"{topic} accepted (rc {rc})")

            # 2. its own command topic, for what the hall file does not give it
            async def own(
                name: str,
                topic: str,
                payload: bytes,
                corr: str | None,
                what: str,
                *,
                retain: bool = False,
            ) -> None:
                attacker = clients[name]
                reply_topic = topic.rsplit("/", 1)[0] + "/reply"
                error_topic = T.error("coordinator", "coordinator")
                seen = len(watch.got)
                rc = await attacker.publish(topic, payload, retain=retain)
                if rc == NOT_AUTHORISED:
                    report.note(name, "broker", what)
                    return
                if corr is not None:
                    await attacker.wait(lambda: reply_to(attacker, reply_topic, corr))
                    reply = reply_to(attacker, reply_topic, corr)
                    if reply is not None and not reply.ok:
                        report.note(name, "coordinator", what, reply.error.code)
                    else:
                        report.note(name, "effect", f"{what}: {reply}")
                    return

                def reported() -> list[m.ErrorReport]:
                    return [
                        m.decode(m.ErrorReport, p)
                        for t, p, _ in watch.got[seen:]
                        if t == error_topic
                    ]

                await watch.wait(lambda: any(r.topic == topic for r in reported()))
                found = [r for r in reported() if r.topic == topic]
                if found:
                    assert ID_NUMBER not in found[0].message
                    assert "\x1b" not in found[0].message
                    report.note(
                        name, "coordinator", what, f"{found[0].code}:{(found[0].field or '')[:12]}"
                    )
                else:
                    report.note(name, "effect", f"{what}: no error report")

            def cmd(**fields: Any) -> tuple[bytes, str]:
                command = m.WindowAction(**fields)
                return m.encode(command), command.id

            w1_cmd = T.cmd("window", "pi-w1")
            await own("pi-w1", w1_cmd, *cmd(window=3, action="call"), "window 3 is not its")
            await own("pi-w1", w1_cmd, *cmd(window=4, action="close"), "window 4 is not its")
            await own(
                "pi-w1", w1_cmd, *cmd(window=1, action="call"), "retained command", retain=True
            )
            await w1.publish(w1_cmd, b"", retain=True)  # clear it from the broker
            await own(
                "pi-w1",
                w1_cmd,
                json.dumps({"window": 1, "action": "call"}).encode(),
                None,
                "command without id",
            )
            await own(
                "pi-w1",
                w1_cmd,
                json.dumps({"v": True, "id": new_ulid(), "window": 1, "action": "call"}).encode(),
                None,
                "v: true",
            )
            await own(
                "pi-w1",
                w1_cmd,
                json.dumps(
                    {"id": new_ulid(), "window": 1, "action": "call", "x" * 500: 1}
                ).encode(),
                None,
                "500-character field name",
            )
            await own(
                "pi-w1",
                w1_cmd,
                json.dumps(
                    {
                        "id": new_ulid(),
                        "window": 1,
                        "action": "call_ticket",
                        "ticket": "A001\n12:00:00 ERROR forged\x1b[2J",
                    }
                ).encode(),
                None,
                "control characters",
            )
            replay = m.WindowAction(id=issue.id, window=1, action="call")
            await own("pi-w1", w1_cmd, m.encode(replay), replay.id, "another sender's id")
            d1_req = T.req("pi-d1")
            green = m.IssueRequest(kind="issue", service="green")
            await own("pi-d1", d1_req, m.encode(green), green.id, "service not its")
            lease = m.LeaseRequest(kind="lease", service="green", size=50)
            await own("pi-d1", d1_req, m.encode(lease), lease.id, "lease not its")
            for priority in (m.Priority.GREEN, m.Priority.ASSISTED):
                ahead = m.IssueRequest(kind="issue", service="invoice", priority=priority)
                await own("pi-d1", d1_req, m.encode(ahead), ahead.id, f"a {priority} ticket")
            await own(
                "pi-d1",
                d1_req,
                json.dumps(
                    {"kind": "issue", "id": new_ulid(), "service": "invoice", "identity": ID_NUMBER}
                ).encode(),
                None,
                "identity number in clear",
            )
            reused = m.IssueRequest(id=control.id, kind="issue", service="invoice")
            await own("pi-d1", d1_req, m.encode(reused), reused.id, "another sender's id")
            sup_cmd = T.cmd("supervisor", "desk-1")
            await own(
                "desk-1", sup_cmd, *cmd(window=2, action="close"), "retained command", retain=True
            )
            await desk.publish(sup_cmd, b"", retain=True)

            # 1b. the same on MQTT 3.1.1, where the broker drops a denied publish without a
            # word: each identity then publishes a marker on its own health topic, and the
            # broker keeps one client's messages in order, so once the operator sees the
            # marker it would have seen anything before it that got through
            for name in ATTACKERS:
                clients[name].close()  # one login, one connection: the broker binds them
                old = clients[name] = Client(port, ca, name, password(name), v5=False)
                assert await old.connect() == 0
                seen = len(watch.got)
                tried = []  # (topic, payload): the coordinator publishes on state/ too
                for topic in foreign_topics(name):
                    payload, retain = forged(topic)
                    tried.append((topic, payload))
                    await old.publish(topic, payload, retain=retain)
                role = ROLES.get(name)
                if role is None:  # the city bridge: its own topic says the link is up
                    own_health, marker = T.city_link(), b"1"
                else:
                    marker = m.encode(m.DeviceHealth(rev=1, components=[]))
                    own_health = T.health(role, name)
                await old.publish(own_health, marker)
                expected = (own_health, marker)

                def marked(e: tuple[str, bytes] = expected, n: int = seen) -> bool:
                    return any((t, p) == e for t, p, _ in watch.got[n:])

                assert await watch.wait(marked)
                through = {(t, p) for t, p, _ in watch.got[seen:]} & set(tried)
                for sent in tried:
                    report.note(
                        f"{name} (3.1.1)", "effect" if sent in through else "broker", sent[0]
                    )
                old.close()
                await log_in(name)
            d1, desk = clients["pi-d1"], clients["desk-1"]

            # 3. outsiders and a stolen login under the coordinator's client id
            async def login(
                what: str, user: str | None, secret: str | None, client_id: str | None = None
            ) -> Client:
                intruder = Client(port, ca, user, secret, client_id)
                rc = await intruder.connect()
                report.note("outsider", "broker" if rc != 0 else "effect", what)
                return intruder

            for args in (
                ("no credentials", None, None, "pi-w9"),
                ("wrong password", "pi-w1", "not-the-password"),
                ("unknown user", "pi-x9", "whatever"),
                ("coordinator's login, wrong password", "coordinator", "guess"),
            ):
                (await login(*args)).close()
            thief = Client(port, ca, "pi-b1", password("pi-b1"), client_id="coordinator")
            assert await thief.connect() == 0  # its own login; the broker renames it
            rc = await thief.publish(
                T.status("coordinator", "coordinator"),
                forged(T.status("coordinator", "coordinator"))[0],
                retain=True,
            )
            report.note(
                "pi-b1 as client id coordinator",
                "broker" if rc == NOT_AUTHORISED else "effect",
                "forged coordinator presence",
            )
            thief.close()
            assert session.connects == 1, "the coordinator was kicked off the broker"
            impostor = Client(port, ca, "pi-w1", password("pi-w1"), client_id="pi-d1")
            assert await impostor.connect() == 0  # renamed pi-w1 by the broker
            rc = await impostor.publish(
                T.req("pi-d1"), m.encode(m.IssueRequest(kind="issue", service="invoice"))
            )
            report.note(
                "pi-w1 as client id pi-d1",
                "broker" if rc == NOT_AUTHORISED else "effect",
                "a ticket request as the dispenser",
            )
            impostor.close()
            assert clients["pi-d1"].c.is_connected(), "the dispenser was kicked off"
            # the broker made the thief pi-b1: it could only take over its own session
            clients["pi-b1"].close()
            flooder = clients["pi-b1"] = Client(port, ca, "pi-b1", password("pi-b1"))
            assert await flooder.connect() == 0

            # 4. a flood: the excess is dropped, the flooder named, the others still served
            flood_topic = T.health("board", "pi-b1")
            health = m.encode(m.DeviceHealth(rev=1, components=[]))
            for _ in range(2000):
                flooder.c.publish(flood_topic, health, qos=0)
            assert await watch.wait(
                lambda: any(
                    t == T.event("alert") and b"client_flood" in p and b"pi-b1" in p
                    for t, p, _ in watch.got
                ),
                10,
            ), (
                "no alert names the flooding board",
                coordinator.authz._buckets,
                len([1 for t, _, _ in watch.got if t == flood_topic]),
            )
            after_flood = m.LeaseRequest(kind="lease", service="invoice", size=5)
            t0 = time.monotonic()
            await d1.publish(T.req("pi-d1"), m.encode(after_flood))
            assert await d1.wait(
                lambda: reply_to(d1, T.reply("dispenser", "pi-d1"), after_flood.id)
            )
            served_in = time.monotonic() - t0
            dropped = coordinator.authz.dropped("board/pi-b1")
            assert dropped > 0

            lease_ok = reply_to(d1, T.reply("dispenser", "pi-d1"), after_flood.id).ok
            assert lease_ok
            after = fingerprint(coordinator)
            assert session.connects == 1, "a client restarted the coordinator's session"
            offline = [
                p
                for t, p, _ in watch.got
                if t == T.status("coordinator", "coordinator") and b"offline" in p
            ]
            assert not offline, "forged or real coordinator offline seen"
    finally:
        for client in clients.values():
            client.close()
        broker.kill()

    seconds = time.monotonic() - started
    result = report.as_dict() | {
        "flood": {
            "sent": 2000,
            "dropped_by_rate_limit": dropped,
            "other_client_served_in_s": round(served_in, 3),
        },
        "seconds": round(seconds, 1),
    }
    print("\nattack report:", json.dumps(result, indent=2, ensure_ascii=False))
    if os.environ.get("HALLQ_ARTIFACTS"):
        artifacts = Path(os.environ["HALLQ_ARTIFACTS"])
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "attack-report.json").write_text(json.dumps(result, indent=2))
    assert report.with_effect == 0, report.effects
    # the lease after the flood is the one change the suite makes on purpose
    assert before[1:] == after[1:], (before, after)
    assert after[0] == before[0] + 1, (before, after)
    assert report.attempts == report.denied_by_broker + report.rejected_by_coordinator


def login(port: int, out: Path, name: str) -> Client:
    """A client of the provisioned hall with ``name``'s own password (``out``: where
    `hallq provision` wrote the credentials)."""
    secret = (out / "devices" / name / "password").read_text().strip()
    return Client(port, out / "devices" / "coordinator" / "ca.crt", name, secret)


def provisioned(tmp_path: Path) -> tuple[HallConfig, int, Path, Mosquitto]:
    """The attack hall as `hallq provision` configures it, its broker started."""
    port, out = free_port(), tmp_path / "provision"
    cfg = attack_hall(port, out, tmp_path / "state")
    provision(cfg, out, port=port, bind="127.0.0.1", run_as="root")
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", config=out / "broker" / "mosquitto.conf", port=port)
    broker.start()
    return cfg, port, out, broker


async def test_one_dispenser_s_password_cannot_starve_the_hall_of_numbers(tmp_path: Path) -> None:
    """Leases are what a dispenser may ask for with its own password: two of 500 took
    every invoice number of the day, and no dispenser could issue one (numbers_exhausted)
    until midnight. Now the thief gets two blocks of the hall's lease size, and the hall
    issues on. Issuing as fast as it may then brings an issue_burst alert naming it."""
    cfg, port, out, broker = provisioned(tmp_path)
    ca = out / "devices" / "coordinator" / "ca.crt"
    password = (out / "devices" / "pi-d1" / "password").read_text().strip()
    thief = Client(port, ca, "pi-d1", password)
    try:
        async with running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator:
            assert await thief.connect() == 0
            await thief.subscribe(T.reply("dispenser", "pi-d1"))
            asked = []
            for _ in range(10):
                lease = m.LeaseRequest(kind="lease", service="invoice", size=500)
                assert await thief.publish(T.req("pi-d1"), m.encode(lease)) == 0
                asked.append(lease.id)
            reply_topic = T.reply("dispenser", "pi-d1")
            assert await thief.wait(lambda: all(reply_to(thief, reply_topic, i) for i in asked))
            granted = [r for i in asked if (r := reply_to(thief, reply_topic, i)).ok]
            assert len(granted) == 2
            assert all(r.last - r.first + 1 == cfg.edge.lease_size for r in granted)
            issue = m.IssueRequest(kind="issue", service="invoice")
            assert await thief.publish(T.req("pi-d1"), m.encode(issue)) == 0
            assert await thief.wait(lambda: reply_to(thief, reply_topic, issue.id) is not None)
            reply = reply_to(thief, reply_topic, issue.id)
            assert reply.ok, reply
            assert coordinator.engine.lease_floor["invoice"] == 1000 - 2 * cfg.edge.lease_size

            # issuing as fast as it may (its rate limit) fills the queue with tickets
            # nobody holds: not refused (a crowd is possible), but named on the desk
            burst = [m.IssueRequest(kind="issue", service="tax-filing") for _ in range(40)]
            for request in burst:
                assert await thief.publish(T.req("pi-d1"), m.encode(request)) == 0
            assert await thief.wait(
                lambda: all(reply_to(thief, reply_topic, r.id) for r in burst), 20
            )
            named = [a for a in alerts_json(coordinator) if a["kind"] == "issue_burst"]
            assert [a["client"] for a in named] == ["pi-d1"], named
            assert "按键卡住" in named[0]["message"]
    finally:
        thief.close()
        broker.kill()


async def test_a_refused_login_backs_off_and_takes_a_fixed_password_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a field engineer with a wrong password on a Pi: its agent tried and logged
    once a second forever ("attempt 1" each time: the port answering restarted the
    backoff), and the right password copied in counted only after a restart. A broker
    that refuses the login is up: the backoff grows, and the password file is read again
    before each attempt."""
    cfg, _port, out, broker = provisioned(tmp_path)
    secret = out / "devices" / "pi-w1" / "password"
    right = secret.read_text()
    secret.write_text("not-the-password\n")
    agent = next(a for a in cfg.agents if a.id == "pi-w1")
    caplog.set_level(logging.DEBUG, logger="hallq.bus")
    try:
        async with make_session(cfg, agent) as pad:

            def attempts() -> list[int]:
                said = re.findall(r"pi-w1: cannot connect .* attempt (\d+)\)", caplog.text)
                return [int(n) for n in said]

            await until(lambda: len(attempts()) >= 4, 30)
            assert attempts()[:4] == [1, 2, 3, 4], attempts()
            assert "the broker refused login 'pi-w1'" in caplog.text
            assert not pad.connected
            secret.write_text(right)
            await pad.wait_connected(30)
    finally:
        broker.kill()


async def test_one_login_s_huge_payloads_are_cut_off_at_the_broker(tmp_path: Path) -> None:
    """Found attacking a provisioned hall: a window Pi's login sent 200 MB payloads on its
    own command topic, each PUBACKed; the coordinator grew to 633 MB reading them, and a
    dispenser's key presses timed out meanwhile. Nothing of ours is over 16 KiB, and the
    broker now disconnects a client whose packet is over 64 KiB; the hall serves on."""
    cfg, port, out, broker = provisioned(tmp_path)
    thief, dispenser = login(port, out, "pi-w1"), login(port, out, "pi-d1")
    try:
        async with running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator:
            for client in (thief, dispenser):
                assert await client.connect() == 0
            await dispenser.subscribe(T.reply("dispenser", "pi-d1"))
            thief.c.publish(T.cmd("window", "pi-w1"), b"x" * 1_000_000, qos=1)
            assert await thief.wait(lambda: bool(thief.cut_off), 10), "not cut off"
            issue = m.IssueRequest(kind="issue", service="tax-filing")
            assert await dispenser.publish(T.req("pi-d1"), m.encode(issue)) == 0
            mine = T.reply("dispenser", "pi-d1")
            assert await dispenser.wait(lambda: reply_to(dispenser, mine, issue.id))
            assert reply_to(dispenser, mine, issue.id).ok
            assert [t.source for t in coordinator.engine.tickets] == ["pi-d1"]
    finally:
        thief.close()
        dispenser.close()
        broker.kill()


async def test_one_window_s_password_cannot_empty_the_queue(tmp_path: Path) -> None:
    """What a window Pi's login may ask for, it asked for every ticket: cancel by number
    (any waiting ticket of the hall), call a named ticket to its window, and call again
    and again (each call finished the last) or call and skip (no-shows), at 50 a
    second. Now a pad's login gets the pad's actions only, and a called ticket stays at
    its window call_hold_s (10 s): at most one ticket is touched here."""
    cfg, port, out, broker = provisioned(tmp_path)
    dispenser, thief = login(port, out, "pi-d1"), login(port, out, "pi-w1")
    try:
        async with running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator:
            for client in (dispenser, thief):
                assert await client.connect() == 0
            await dispenser.subscribe(T.reply("dispenser", "pi-d1"))
            await thief.subscribe(T.reply("window", "pi-w1"))
            issued = []
            for _ in range(10):
                issue = m.IssueRequest(kind="issue", service="tax-filing")
                assert await dispenser.publish(T.req("pi-d1"), m.encode(issue)) == 0
                issued.append(issue.id)
            mine = T.reply("dispenser", "pi-d1")
            assert await dispenser.wait(lambda: all(reply_to(dispenser, mine, i) for i in issued))
            numbers = [reply_to(dispenser, mine, i).ticket.number for i in issued]
            commands: list[m.WindowCommand] = []
            for number in numbers:
                commands += [
                    m.TicketAction(window=1, action="cancel", ticket=number),
                    m.TicketAction(window=1, action="call_ticket", ticket=number),
                    m.Transfer(window=1, action="transfer", ticket=number, to_service="invoice"),
                    m.WindowAction(window=1, action="call"),
                    m.WindowAction(window=1, action="skip"),
                    m.Finish(window=1, action="finish"),
                ]
            for command in commands:
                assert await thief.publish(T.cmd("window", "pi-w1"), m.encode(command)) == 0
            theirs = T.reply("window", "pi-w1")
            assert await thief.wait(
                lambda: all(reply_to(thief, theirs, c.id) for c in commands), 20
            )
            replies = [reply_to(thief, theirs, c.id) for c in commands]
            accepted = [c.action for c, r in zip(commands, replies, strict=True) if r.ok]
            assert accepted == ["call"], accepted
            refused = Counter(r.error.code for r in replies if not r.ok)
            assert set(refused) == {"not_a_pad_action", "called_just_now"}, refused
            states = Counter(t.state for t in coordinator.engine.tickets)
            assert states == {m.TicketState.CALLED: 1, m.TicketState.WAITING: 9}, states
    finally:
        dispenser.close()
        thief.close()
        broker.kill()


async def test_a_stolen_password_in_use_is_named_on_the_desk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone logs in with pi-w1's password while pi-w1 runs, and with the coordinator's:
    the broker lets one connection per login in, so each time the thief connects it drops
    the one who was there, and the thief announces nothing (no birth, no health). Before,
    only the victim's log said it; the desk showed nothing. Now the desk names both ids,
    and lets go of them once the thief is gone."""
    monkeypatch.setattr(bus, "SHARED_ID_CLEAR_S", 2.0)  # 60 s in service
    cfg, port, out, broker = provisioned(tmp_path)
    ca = out / "devices" / "coordinator" / "ca.crt"

    def named(coordinator: Any) -> set[tuple[str, str]]:
        return {
            (a["role"], a["client"])
            for a in alerts_json(coordinator)
            if a["kind"] == "device_shared_id"
        }

    def back(victim: Session, connects: int) -> Callable[[], bool]:
        return lambda: victim.connects > connects and victim.connected

    async def push_off(victim: Session, login: str) -> None:
        """The thief connects, and again each time the victim is back."""
        password = (out / "devices" / login / "password").read_text().strip()
        for _ in range(bus.SHARED_ID_LOSSES):
            connects = victim.connects
            thief = Client(port, ca, login, password)
            try:
                assert await thief.connect() == 0
                await until(back(victim, connects), 20)
            finally:
                thief.close()

    try:
        async with running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator:
            agent = next(a for a in cfg.agents if a.id == "pi-w1")
            async with make_session(cfg, agent) as pad:
                health = Health(pad)
                pad.on_connect(health.publish)
                await pad.wait_connected(10)
                await push_off(pad, "pi-w1")
                await until(lambda: ("window", "pi-w1") in named(coordinator), 20)
                desk = desk_alerts(coordinator, AlertBook())
                assert "device_shared_id" in {a.kind for a in desk}
                await until(lambda: not named(coordinator), 20)  # the thief gave up

                session = coordinator.session
                assert session is not None
                await push_off(session, "coordinator")
                await until(lambda: ("coordinator", "coordinator") in named(coordinator), 20)
                assert ("window", "pi-w1") not in named(coordinator)
                await until(lambda: not named(coordinator), 20)
    finally:
        broker.kill()


async def test_a_suspended_login_gets_nothing_and_cannot_lift_its_suspension(
    tmp_path: Path,
) -> None:
    """A supervisor suspended pi-d1 (its password in other hands). Through the provisioned
    broker that login then gets no ticket, lease or void, and nothing it or a window's
    login can send lifts the suspension: a device command is not on the wire, and the
    look-alikes are refused as malformed."""
    cfg, port, out, broker = provisioned(tmp_path)
    thief, pad, watch = (login(port, out, name) for name in ("pi-d1", "pi-w1", "operator"))
    mine = T.reply("dispenser", "pi-d1")
    try:
        async with running(cfg, tmp_path / "log.sqlite", FakeClock()) as coordinator:
            for client in (thief, pad, watch):
                assert await client.connect() == 0
            await thief.subscribe(mine)
            await watch.subscribe(T.error("coordinator", "coordinator"))
            first = m.IssueRequest(kind="issue", service="invoice")
            assert await thief.publish(T.req("pi-d1"), m.encode(first)) == 0
            assert await thief.wait(lambda: reply_to(thief, mine, first.id))
            number = reply_to(thief, mine, first.id).ticket.number
            suspend = DeviceCommand(kind="device", action="suspend", client="pi-d1")
            done = await coordinator.execute("device", "supervisor", "alice", suspend, reply=False)
            assert done.record["ok"]

            asked = [
                m.IssueRequest(kind="issue", service="invoice"),
                m.LeaseRequest(kind="lease", service="invoice", size=5),
                m.VoidRequest(kind="void", number=number, reason="x"),
            ]
            for request in asked:
                assert await thief.publish(T.req("pi-d1"), m.encode(request)) == 0
            assert await thief.wait(lambda: all(reply_to(thief, mine, r.id) for r in asked), 10)
            codes = [reply_to(thief, mine, r.id).error.code for r in asked]
            assert codes == ["device_suspended"] * 3

            lift = {"v": 1, "kind": "device", "action": "resume", "client": "pi-d1"}
            forged = [
                (thief, T.req("pi-d1"), {**lift, "id": new_ulid()}),
                (pad, T.cmd("window", "pi-w1"), {**lift, "id": new_ulid(), "window": 1}),
            ]
            for client, topic, payload in forged:
                assert await client.publish(topic, json.dumps(payload).encode()) == 0

            def reported() -> set[str]:
                return {
                    m.decode(m.ErrorReport, p).topic
                    for t, p, _ in watch.got
                    if t == T.error("coordinator", "coordinator")
                }

            assert await watch.wait(lambda: {t for _, t, _ in forged} <= reported(), 10)
            assert coordinator.engine.suspended.keys() == {"pi-d1"}
            assert [t.number for t in coordinator.engine.tickets] == [number]
    finally:
        for client in (thief, pad, watch):
            client.close()
        broker.kill()
