"""Fuzz of the coordinator's MQTT input: malformed and mutated payloads on every topic it
subscribes to (taken from the contract table, not written out here).

The volume run feeds the coordinator's own session entry point (``Session._dispatch`` with
the coordinator's routes, as a message from the broker would) with no broker in between,
so the count measures validation and handling. A smaller batch then goes through a real
Mosquitto to a real coordinator, which must keep its one session and answer a legitimate
dispenser afterwards.

For each payload the contract decides: invalid ones must leave the hall exactly as it was
(engine state, event log, device book) and produce one error report naming the field (or
the JSON position, or the size); valid ones (a mutation can land on a valid command) must
be answered. Nothing may escape the entry point, and no handler may fail.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import BaseModel

from coordinator.service import Coordinator
from hallq import messages as m
from hallq.bus import Session
from hallq.config import HallConfig, parse_config
from hallq.contract import CLIENT_TOPICS, TopicSpec
from hallq.errors import PayloadError
from hallq.logsetup import escape_controls, redact
from hallq.topics import Role, matches
from hallq.ulid import new_ulid

from .conftest import Inbox, Mosquitto
from .coordinated import FakeClock, device, running
from .fuzzing import TIMEOUT, count, report, rng
from .halls import small_hall_text

pytestmark = TIMEOUT

# The clients a payload comes from on each role's topics (the small hall's own agents, a
# supervisor, and one id the hall does not know).
CLIENTS: dict[Role, tuple[str, ...]] = {
    Role.WINDOW: ("pi-w1", "pi-w9"),
    Role.DISPENSER: ("pi-d1",),
    Role.BOARD: ("pi-b1",),
    Role.SUPERVISOR: ("sup-1",),
    Role.COORDINATOR: ("coordinator",),
}


def fuzz_hall(broker_url: str | None, tmp_path: Path) -> HallConfig:
    """The small hall with supervisor ``sup-1``, and a rate limit no fuzz batch reaches:
    this suite is about what a payload can do, the rate limit has its own tests."""
    text = small_hall_text(broker_url, str(tmp_path / "state"))
    text += (
        '\n[security]\nsupervisor_clients = ["sup-1"]\nclient_rate_per_s = 10000\n'
        "client_burst = 100000\n"
    )
    return parse_config(text, "fuzz-hall.toml")


def coordinator_inputs() -> list[tuple[TopicSpec, Role]]:
    """Every (topic, role) the contract says the coordinator receives."""
    return [
        (spec, role)
        for spec in CLIENT_TOPICS.values()
        if "coordinator" in spec.subscribers.split(", ")
        for role in spec.roles
    ]


@functools.cache
def field_names(payload: Any) -> frozenset[str]:
    """Top-level fields of a payload type, over every member of a union."""
    schema = m.adapter(payload).json_schema()
    members = [schema, *schema.get("$defs", {}).values()]
    return frozenset(name for member in members for name in member.get("properties", {}))


def topic_of(spec: TopicSpec, role: Role, client: str, hall: str = "test-hall") -> str:
    return spec.pattern.format(hall=hall, role=role.value, client=client)


# --- valid seeds per payload type ---------------------------------------------------------


def _seeds(payload: Any, role: Role, client: str) -> list[BaseModel]:
    if payload is m.WindowCommand:
        w = 1
        return [
            *(
                m.WindowAction(window=w, action=a)
                for a in (
                    "call",
                    "recall",
                    "skip",
                    "start",
                    "pause",
                    "resume",
                    "open",
                    "close",
                    "park",
                    "emergency",
                )
            ),
            m.TicketAction(window=w, action="call_ticket", ticket="A001"),
            m.TicketAction(window=w, action="cancel", ticket="B002"),
            m.Transfer(window=w, action="transfer", to_service="invoice"),
            m.Transfer(window=w, action="transfer", ticket="A001", to_window=2),
            m.Finish(window=w, action="finish", rating=4),
            m.Rate(window=w, action="rate", ticket="A001", rating=3),
            m.SetSkills(window=w, action="set_skills", skills={"invoice": 2.0, "green": 1.0}),
        ]
    if payload is m.TicketRequest:
        return [
            m.IssueRequest(kind="issue", service="tax-filing"),
            m.IssueRequest(
                kind="issue",
                service="invoice",
                priority=m.Priority.ASSISTED,
                appointment="AB12",
                identity="0" * 64,
            ),
            m.IssueRequest(
                kind="issue",
                service="tax-filing",
                offline=m.OfflineIssue(number="A901", issued_at=m._utcnow(), supersedes=new_ulid()),
            ),
            m.LeaseRequest(kind="lease", service="invoice", size=20),
            m.VoidRequest(kind="void", number="A001", reason="paper out"),
        ]
    if payload is m.Presence:
        return [
            m.Presence(state=s, boot=b, role=role.value, client=client, version="1.0")
            for s in ("online", "offline")
            for b in (1, 7)
        ]
    if payload is m.DeviceHealth:
        return [
            m.DeviceHealth(
                rev=r,
                components=[
                    m.ComponentHealth(name="link", ok=True, status="ok"),
                    m.ComponentHealth(name="printer", ok=False, status="paper_out", detail="empty"),
                ],
            )
            for r in (1, 5)
        ]
    raise AssertionError(f"no seeds for {payload!r}: the fuzz must cover every input topic")


# --- mutations ------------------------------------------------------------------------------

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    -(2**70),
    1.5,
    1e308,
    "",
    "x",
    "A001",
    "1",
    "\x00\x1b[31m\n",
    "窗口",
    "a" * 5000,
    [],
    [1, "a"],
    {},
    {"a": 1},
    {"window": 1},
    "2026-12-04T10:00:00",
    "2026-12-04T10:00:00+08:00",
    "01JEXAMPLE0000000000000000",
    "440103199001011236",
]
ODD_KEYS = ["", "x", "v ", "ID", "window\x00", "\u202e", "action", "__proto__", "k" * 40, "é" * 100]


TAGS = ("action", "kind")  # a changed tag makes the payload another model: any field may
# be the first one wrong


@dataclass
class Mutant:
    raw: bytes
    how: str
    field: str | None = None  # the field a validation error must name, when it is known


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _get_parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        doc = doc[p]
    return doc


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def mutate(r: random.Random, seed: dict[str, Any]) -> Mutant:
    doc = json.loads(json.dumps(seed))
    paths = list(_paths(doc))
    kind = r.randrange(12)
    if kind == 0:  # a value of the wrong kind, or out of range
        path = r.choice(paths)
        value = r.choice(ODD_VALUES)
        _get_parent(doc, path)[path[-1]] = value
        return Mutant(_dump(doc), "odd_value", _dotted(path))
    if kind == 1:  # a field left out
        path = r.choice(paths)
        del _get_parent(doc, path)[path[-1]]
        return Mutant(_dump(doc), "missing", _dotted(path))
    if kind == 2:  # a field the contract does not have
        path = r.choice([(), *(p for p in paths if isinstance(_at(doc, p), dict))])
        key = r.choice([*ODD_KEYS, "z" * r.randrange(150, 600)])
        target = _at(doc, path)
        if key in target:
            key += "_"
        target[key] = r.choice(ODD_VALUES)
        return Mutant(_dump(doc), "extra", _dotted((*path, key)))
    if kind == 3:  # the tag of a union
        tag = "action" if "action" in doc else "kind" if "kind" in doc else "state"
        doc[tag] = r.choice(["", "CALL", "call ", "issue", "lease", 1, None, "offline", "x"])
        return Mutant(_dump(doc), "tag", tag)
    if kind == 4:  # the whole document of another shape
        return Mutant(_dump(r.choice([[], [doc], "text", 1, None, True, {}])), "shape", None)
    if kind == 5:  # cut anywhere
        data = _dump(doc)
        return Mutant(data[: r.randrange(len(data))], "truncated")
    if kind == 6:  # bytes flipped
        flipped = bytearray(_dump(doc))
        for _ in range(r.randrange(1, 4)):
            flipped[r.randrange(len(flipped))] ^= 1 << r.randrange(8)
        return Mutant(bytes(flipped), "bitflip")
    if kind == 7:  # not UTF-8, NUL, a BOM, trailing junk
        data = _dump(doc)
        edit = r.choice([b"\xff\xfe", b"\x00", b"\xef\xbb\xbf", b"}", b",", b"\xc3"])
        at = r.randrange(len(data) + 1)
        return Mutant(data[:at] + edit + data[at:], "bytes")
    if kind == 8:  # sizes and depths a parser might choke on
        choice = r.randrange(4)
        if choice == 0:
            return Mutant(b"[" * 100_000 + b"]" * 100_000, "deep")
        if choice == 1:
            return Mutant(b'{"pad": "' + b"x" * (m.MAX_PAYLOAD_BYTES + 1) + b'"}', "oversize")
        if choice == 2:
            return Mutant(b"", "empty")
        return Mutant(b"\x00" * r.randrange(1, 64), "nul")
    if kind == 9:  # JSON that strict parsing must refuse
        path = r.choice(paths)
        literal = r.choice(["NaN", "Infinity", "-Infinity", "1e400", "-0", "1.0", '"1"'])
        _get_parent(doc, path)[path[-1]] = "@@LITERAL@@"
        data = _dump(doc).replace(b'"@@LITERAL@@"', literal.encode())
        return Mutant(data, "literal", _dotted(path))
    if kind == 10:  # a key given twice (the last one wins in JSON; the value must be valid)
        key = r.choice(list(doc))
        data = _dump(doc)
        extra = json.dumps({key: r.choice(ODD_VALUES)})[1:-1].encode()
        return Mutant(data[:-1] + b"," + extra + b"}", "duplicate_key")
    # a valid payload, now and then: the coordinator must answer it, not choke
    return Mutant(_dump(doc), "unchanged")


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# --- the harness -----------------------------------------------------------------------------


@dataclass
class Tally:
    sent: int = 0
    valid: int = 0
    rejected: int = 0
    crashes: int = 0
    state_changes: int = 0
    codes: Counter[str] = field(default_factory=Counter)


def snapshot(c: Coordinator) -> str:
    """Everything a payload could change: the engine's published state, the event log's
    length and the device book."""
    e, rev, now = c.engine, c.queue.seq, c.clock()
    parts: list[Any] = [rev, c.eventlog.path.stat().st_size]
    parts += [
        e.window_state(n, rev).model_dump(mode="json", exclude={"ts", "id"}) for n in e.windows
    ]
    # a queue's wait estimates are refreshed by the coordinator's own timer; its tickets not
    parts += [
        e.queue_state(s, rev, now).model_dump(
            mode="json", exclude={"ts", "id", "eta_min", "wait", "oldest_wait_s"}
        )
        for s in e.services
    ]
    parts.append(e.board_state(rev).model_dump(mode="json", exclude={"ts", "id"}))
    parts.append(e.stats_state(rev).model_dump(mode="json", exclude={"ts", "id"}))
    parts.append(
        [
            {
                **vars(d),
                "health": d.health and d.health.model_dump(mode="json", exclude={"ts", "id"}),
            }
            for d in c.devices.all()
        ]
    )
    return json.dumps(parts, sort_keys=True, default=str)


def assert_same(before: str, after: str) -> None:
    """Two snapshots equal; if not, the first place they differ."""

    def first_difference(a: Any, b: Any, path: str) -> str | None:
        if type(a) is not type(b) or not isinstance(a, (dict, list)):
            return None if a == b else f"{path}: {a!r} -> {b!r}"
        keys = sorted(set(a) | set(b)) if isinstance(a, dict) else range(max(len(a), len(b)))
        for k in keys:
            try:
                found = first_difference(a[k], b[k], f"{path}/{k}")
            except (KeyError, IndexError):
                return f"{path}/{k}: only on one side"
            if found:
                return found
        return None

    assert before == after, first_difference(json.loads(before), json.loads(after), "")


def unclipped(text: str) -> str:
    """What is left of a quoted text the report cut short (hallq clips with "...")."""
    return text[:-3] if text.endswith("...") else text


def check_report(report_msg: m.ErrorReport, mutant: Mutant, topic: str) -> None:
    """The report names what was wrong: a field, the JSON position, or the size."""
    again = m.decode(m.ErrorReport, m.encode(report_msg))  # as the dashboard receives it
    assert again.topic == topic
    if report_msg.code == "invalid_json":
        assert "line" in report_msg.message, report_msg
        assert "column" in report_msg.message, report_msg
    elif report_msg.code == "oversize":
        assert "bytes" in report_msg.message, report_msg
    else:
        assert report_msg.code == "invalid_payload", report_msg
        assert report_msg.field, report_msg
        assert unclipped(report_msg.field)[:40] in report_msg.message, report_msg


async def test_fuzz_coordinator_payloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = rng("mqtt")
    # messages go straight into the session: the connection they "came on" is taken as up
    monkeypatch.setattr(Session, "link_up", property(lambda _: True))
    n = count(5_000, 100_000)
    cfg = fuzz_hall(None, tmp_path)
    coordinator = Coordinator(
        cfg, log_path=tmp_path / "log.sqlite", dispatch="auto", clock=FakeClock()
    )
    session = coordinator.make_session()
    await coordinator.attach(session)
    published: list[tuple[str, BaseModel]] = []

    async def record(
        topic: str, message: BaseModel, *, queue: bool = False, deadline: float | None = None
    ) -> bool:
        m.encode(message)  # what the real publish does first: it must fit the contract
        published.append((topic, message))
        return True

    async def record_many(items: Any) -> None:
        for topic, message in items:
            await record(topic, message)

    class Handed:  # what Session.hand_over returns: the broker's PUBACKs, here at once
        async def acked(self) -> None:
            return None

    def record_handed(items: Any, now: bool = False) -> Any:  # (a group's replies, events, states)
        for topic, message in items:
            m.encode(message)
            published.append((topic, message))
        return Handed()

    session.publish = record  # type: ignore[method-assign]
    session.publish_many = record_many  # type: ignore[method-assign]
    session.hand_over = record_handed  # type: ignore[method-assign]
    inputs = coordinator_inputs()
    # every topic the contract gives the coordinator is routed to a handler, and only those
    routed = [f for f, _ in session._routes]
    for spec, role in inputs:
        assert any(matches(f, topic_of(spec, role, CLIENTS[role][0])) for f in routed), spec
    seeds = [
        [
            (spec, role, client, s.model_dump(mode="json", exclude_none=True))
            for client in CLIENTS[role]
            for s in _seeds(spec.payload, role, client)
        ]
        for spec, role in inputs
    ]
    tally = Tally()
    per_topic: Counter[str] = Counter()
    quiet = logging.getLogger("hallq")
    level, quiet.level = quiet.level, logging.ERROR  # 100 k rejections would fill caplog
    try:
        with report("mqtt-entry-point", {"payloads": n}) as figures:
            before: str | None = None  # the hall as the last valid payload left it
            since: list[str] = []  # the invalid payloads sent since
            for i in range(n):
                spec, role, client, seed = r.choice(seeds[i % len(seeds)])
                mutant = mutate(r, seed)
                topic = topic_of(spec, role, client)
                per_topic[f"{role.value}/{spec.pattern.rsplit('/', 1)[1]}"] += 1
                try:
                    m.decode(spec.payload, mutant.raw)
                    valid = True
                except PayloadError:
                    valid = False
                if not valid and before is None:
                    before, since = snapshot(coordinator), []
                    seq = coordinator.queue.seq
                mark = len(published)
                message = aiomqtt.Message(topic, mutant.raw, 1, False, i + 1, None)
                context = f"#{i} {mutant.how} on {topic}: {mutant.raw[:300]!r}"
                try:
                    await session._dispatch(message)
                except Exception as exc:
                    tally.crashes += 1
                    raise AssertionError(f"escaped the entry point: {exc!r}: {context}") from exc
                out = published[mark:]
                tally.sent += 1
                errors = [msg for t, msg in out if isinstance(msg, m.ErrorReport)]
                assert all(e.code != "handler_failed" for e in errors), (errors, context)
                if valid:
                    tally.valid += 1
                    if spec.payload in (m.WindowCommand, m.TicketRequest):
                        replies = [t for t, _ in out if t.endswith("/reply")]
                        assert replies == [topic.rsplit("/", 1)[0] + "/reply"], context
                    before = None
                    continue
                tally.rejected += 1
                assert len(errors) == 1, (out, context)
                assert len(out) == 1, (out, context)
                check_report(errors[0], mutant, topic)
                tally.codes[errors[0].code] += 1
                top = (mutant.field or "").split(".")[0]
                if top and top not in TAGS and errors[0].code == "invalid_payload":
                    # the mutated field, or another field of the object it is in (a required
                    # one now missing, or the union member the damage points to)
                    named = unclipped(errors[0].field or "").split(".")[0]
                    shown = escape_controls(redact(top))  # as an error may quote client text
                    assert shown.startswith(named) or named in field_names(spec.payload), (
                        errors[0].field,
                        context,
                    )
                since.append(context)
                # the full comparison every few payloads (it costs more than the rest); the
                # event log's sequence every time
                if coordinator.queue.seq != seq or (
                    (i % 8 == 0 or i == n - 1) and (snapshot(coordinator) != before)
                ):
                    tally.state_changes += 1
                    raise AssertionError(f"invalid input changed the hall: one of {since}")
            figures.update(
                valid=tally.valid,
                rejected=tally.rejected,
                crashes=tally.crashes,
                state_changes=tally.state_changes,
                codes=dict(tally.codes),
                topics=dict(per_topic),
            )
    finally:
        quiet.level = level
        coordinator.close()
    assert set(per_topic) == {
        f"{role.value}/{spec.pattern.rsplit('/', 1)[1]}" for spec, role in inputs
    }
    assert tally.rejected > n // 2
    assert tally.valid > 0


# --- the same, over a real broker -------------------------------------------------------------


@pytest.mark.broker
async def test_fuzz_over_mosquitto_the_session_survives(
    mosquitto: Mosquitto, tmp_path: Path, inbox: Callable[[], Inbox]
) -> None:
    r = rng("mqtt-broker")
    n = count(2_000, 10_000)
    cfg = fuzz_hall(mosquitto.url, tmp_path)
    clock = FakeClock()
    errors = inbox()
    plan: list[tuple[str, bytes]] = []
    inputs = coordinator_inputs()
    while len(plan) < n:
        spec, role = r.choice(inputs)
        client = r.choice(CLIENTS[role])
        seed = r.choice(_seeds(spec.payload, role, client)).model_dump(
            mode="json", exclude_none=True
        )
        mutant = mutate(r, seed)
        try:
            m.decode(spec.payload, mutant.raw)
            continue  # only invalid payloads here: each must come back as one report
        except PayloadError:
            pass
        plan.append((topic_of(spec, role, client), mutant.raw))
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        device(cfg, "board", "watcher", tmp_path) as watcher,
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        session = coordinator.session
        assert session is not None  # running() returns a started coordinator
        await watcher.subscribe(session.error_topic, errors)
        await watcher.wait_connected(10)
        await dispenser.wait_connected(10)
        assert (await ask_for_a_ticket(dispenser)) == "A001"  # and the day has begun
        before = snapshot(coordinator)
        connects = session.connects
        quiet = logging.getLogger("hallq")
        level, quiet.level = quiet.level, logging.ERROR
        try:
            with report("mqtt-mosquitto", {"payloads": n}) as figures:
                # In windows of 200: Mosquitto queues at most 1000 messages for a client
                # that has not acknowledged them, and drops the rest (a flooding device is
                # the rate limits' business, not this suite's).
                want: Counter[str] = Counter()
                async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="fuzzer") as raw:
                    for start in range(0, n, 200):
                        for topic, payload in plan[start : start + 200]:
                            await raw.publish(topic, payload, qos=1)
                            want[topic] += 1
                        reports = await errors.wait_for(
                            lambda ps: not want - Counter(e.topic for e in ps), timeout=20
                        )
                figures["reports"] = len(reports)
                figures["without_field"] = sum(
                    1 for e in reports if e.code == "invalid_payload" and not e.field
                )
        finally:
            quiet.level = level
        assert_same(before, snapshot(coordinator))
        assert session.connects == connects  # never restarted
        assert session.connected
        assert all(e.code != "handler_failed" for e in reports)
        assert all(e.field for e in reports if e.code == "invalid_payload")
        # one report per payload; the coordinator's own status topic is delivered to it
        # twice (its own subscription and the wildcard overlap), so reported twice
        extra = Counter(e.topic for e in reports) - want
        assert set(extra) <= {session.status_topic}, extra
        assert (await ask_for_a_ticket(dispenser)) == "A002"


async def ask_for_a_ticket(dispenser: Session) -> str:
    reply = await dispenser.request(
        dispenser.topics.req("pi-d1"),
        m.IssueRequest(kind="issue", service="tax-filing"),
        timeout=10,
    )
    assert reply.ok
    assert reply.ticket is not None
    return str(reply.ticket.number)
