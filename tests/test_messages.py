from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from hallq import messages as m
from hallq.contract import ALL_TOPICS
from hallq.errors import PayloadError
from hallq.ulid import new_ulid, ulid_time_ms

NOW = dt.datetime(2026, 11, 29, 9, 30, tzinfo=dt.UTC)
HASH = "ab" * 32

EXAMPLES: list[Any] = [
    m.WindowAction(window=15, action="call"),
    m.TicketAction(window=15, action="reinstate", ticket="A023"),
    m.Transfer(window=15, action="transfer", to_service="invoice"),
    m.Finish(window=15, action="finish", rating=4),
    m.Rate(window=15, action="rate", ticket="A023", rating=1),
    m.SetSkills(window=15, action="set_skills", skills={"tax-filing": 1.0, "invoice": 0.5}),
    m.IssueRequest(kind="issue", service="tax-filing", priority=m.Priority.GREEN, identity=HASH),
    m.IssueRequest(
        kind="issue",
        service="invoice",
        offline=m.OfflineIssue(number="B901", issued_at=NOW),
    ),
    m.LeaseRequest(kind="lease", service="invoice", size=50),
    m.VoidRequest(kind="void", number="B012", reason="printer out of paper"),
    m.IssueReply(
        kind="issue",
        corr=new_ulid(),
        ok=True,
        ticket=m.TicketInfo(
            number="A023",
            service="tax-filing",
            priority=m.Priority.NORMAL,
            issued_at=NOW,
            people_ahead=4,
            eta_min=6.5,
            url="https://hall.example/t/liwan/A023",
        ),
    ),
    m.IssueReply(
        kind="issue",
        corr=new_ulid(),
        ok=False,
        error=m.Rejection(code="service_closed", message="发票办理 已停止取号"),
    ),
    m.LeaseReply(
        kind="lease",
        corr=new_ulid(),
        ok=True,
        service="invoice",
        day=NOW.date(),
        first=901,
        last=950,
    ),
    m.CommandReply(kind="command", corr=new_ulid(), ok=True, ticket="A023"),
    m.CallEvent(ticket="A023", service="tax-filing", window=15, zone="hall-1"),
    m.TicketEvent(ticket="A023", service="tax-filing", state=m.TicketState.NO_SHOW, window=15),
    m.AlertEvent(severity="critical", kind="emergency", message="15号窗口紧急呼叫", window=15),
    m.WindowState(
        rev=7,
        window=15,
        zone="hall-1",
        status=m.WindowStatus.OPEN,
        ticket="A023",
        service="tax-filing",
        since=NOW,
        skills={"tax-filing": 1.0},
    ),
    m.BoardState(
        rev=9,
        calls=[m.BoardCall(ticket="A023", window=15, zone="hall-1", called_at=NOW)],
        waiting={"tax-filing": 12},
        comfort="适中",
    ),
    m.QueueState(rev=3, service="tax-filing", waiting=2, next=["A024", "A025"], eta_min=3.0),
    m.ComfortState(
        rev=4,
        source="event log, 26 weeks",
        quiet_below_per_hour=1289.0,
        busy_from_per_hour=1635.0,
        method="simulated",
        days=[
            m.ComfortDay(
                day=NOW.date(),
                open=True,
                level="适中",
                first_hour=9,
                hours=["较少", "较多", "适中", None],
                expected=[800, 1700, 1400, 0],
            ),
            m.ComfortDay(day=NOW.date(), open=False, level="较少"),
        ],
    ),
    m.StatsState(
        rev=1,
        day=NOW.date(),
        total=m.Kpi(issued=10, served=8, avg_wait_s=301.0),
        per_window={"15": m.Kpi(issued=0, served=3)},
    ),
    m.Presence(state="online", boot=12, role="window", client="win-01", version="0.1.0"),
    m.DeviceHealth(
        rev=1, components=[m.ComponentHealth(name="printer", ok=False, status="paper_near_end")]
    ),
    m.ErrorReport(
        topic="hallq/v1/liwan/window/w/cmd", code="invalid_payload", message="bad", field="window"
    ),
]

TYPE_OF: dict[type[Any], Any] = {
    m.WindowAction: m.WindowCommand,
    m.TicketAction: m.WindowCommand,
    m.Transfer: m.WindowCommand,
    m.Finish: m.WindowCommand,
    m.Rate: m.WindowCommand,
    m.SetSkills: m.WindowCommand,
    m.IssueRequest: m.TicketRequest,
    m.LeaseRequest: m.TicketRequest,
    m.VoidRequest: m.TicketRequest,
    m.IssueReply: m.Reply,
    m.LeaseReply: m.Reply,
    m.CommandReply: m.Reply,
}


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip_through_the_contract_type(message: Any) -> None:
    wire_type = TYPE_OF.get(type(message), type(message))
    data = m.encode(message)
    back = m.decode(wire_type, data)
    assert back == message
    assert type(back) is type(message)
    fields = json.loads(data)
    assert fields["v"] == 1
    assert len(fields["id"]) == 26
    assert fields["ts"].endswith("Z")


def test_every_contract_payload_has_an_example() -> None:
    covered = {TYPE_OF.get(type(x), type(x)) for x in EXAMPLES} | {m.CityLinkState}
    assert {spec.payload for spec in ALL_TOPICS} <= covered


def test_the_city_link_state_is_the_bare_number_mosquitto_writes() -> None:
    """Mosquitto's bridge notification is ``1`` or ``0``, not one of our messages."""
    assert m.decode(m.CityLinkState, b"1").root == 1
    assert m.decode(m.CityLinkState, b"0").root == 0
    for bad in (b'"1"', b"2", b"true", b""):
        with pytest.raises(PayloadError):
            m.decode(m.CityLinkState, bad)


def _call(**override: Any) -> bytes:
    # a fixed id: parameters built from it name the tests, and xdist workers must agree
    base = {
        "v": 1,
        "id": "01KB0Q4M3ZC7T9V2W8X5Y6N1PA",
        "ts": "2026-11-29T09:30:00Z",
        "window": 15,
        "action": "call",
    }
    base.update(override)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (_call(window="15"), "window", "valid integer"),
        (_call(window=0), "window", "greater than or equal to 1"),
        (_call(windwo=15), "windwo", "Extra inputs are not permitted"),
        (_call(action="fly"), "action", "does not match any of the expected tags"),
        (_call(action=...), "action", "Unable to extract tag"),
        (_call(v=2), "v", "Input should be 1"),
        (_call(ts="2026-11-29T09:30:00"), "ts", "timezone"),
        (_call(id="not-a-ulid"), "id", "pattern"),
        (_call(action="rate", ticket="A023", rating=5), "rating", "less than or equal to 4"),
        (_call(action="call_ticket", ticket="a23"), "ticket", "pattern"),
        (_call(action="transfer"), "to_window", "exactly one of to_service or to_window"),
        (_call(action="transfer", to_service="invoice", to_window=3), "to_window", "exactly one"),
        (_call(v=True), "v", "integer, not a boolean"),
    ],
)
def test_rejections_name_the_field(data: bytes, field: str, words: str) -> None:
    with pytest.raises(PayloadError) as info:
        m.decode(m.WindowCommand, data)
    assert info.value.field == field
    assert f"field {field}:" in str(info.value)
    assert words in str(info.value)
    assert info.value.code == "invalid_payload"


def test_invalid_json_and_oversize_are_their_own_codes() -> None:
    with pytest.raises(PayloadError) as info:
        m.decode(m.Presence, b"{not json")
    assert info.value.code == "invalid_json"
    assert "Presence" in str(info.value)
    big = json.dumps({"topic": "x", "code": "oversize", "message": "y" * m.MAX_PAYLOAD_BYTES})
    with pytest.raises(PayloadError) as info:
        m.decode(m.ErrorReport, big.encode())
    assert info.value.code == "oversize"
    assert "byte limit" in str(info.value)


def test_encode_refuses_a_payload_over_the_limit() -> None:
    board = m.BoardState(rev=1, waiting={f"s{i}": i for i in range(2000)})
    with pytest.raises(PayloadError, match="byte limit"):
        m.encode(board)


def test_identity_must_be_a_keyed_hash_never_a_raw_id_number() -> None:
    raw = json.dumps(
        {
            "v": 1,
            "id": new_ulid(),
            "ts": "2026-11-29T09:30:00Z",
            "kind": "issue",
            "service": "tax-filing",
            "identity": "44010319900101123X",
        }
    ).encode()
    with pytest.raises(PayloadError) as info:
        m.decode(m.TicketRequest, raw)
    assert info.value.field == "identity"


def test_the_rejection_never_quotes_the_id_number_it_refused() -> None:
    raw = json.dumps(
        {
            "id": new_ulid(),
            "kind": "issue",
            "service": "tax-filing",
            "identity": "44010319900101123X",
        }
    ).encode()
    with pytest.raises(PayloadError) as info:
        m.decode(m.TicketRequest, raw)
    assert "44010319900101123X" not in str(info.value)
    assert "[id-redacted]" in str(info.value)
    raw = json.dumps(
        {"id": new_ulid(), "kind": "issue", "service": "tax-filing", "44010319900101123X": 1}
    ).encode()
    with pytest.raises(PayloadError) as info:
        m.decode(m.TicketRequest, raw)
    assert "44010319900101123X" not in str(info.value) + (info.value.field or "")


def test_a_command_off_the_wire_needs_its_id_but_one_built_here_gets_one() -> None:
    for kind, data in (
        (m.WindowCommand, {"window": 1, "action": "call"}),
        (m.TicketRequest, {"kind": "lease", "service": "invoice", "size": 5}),
    ):
        with pytest.raises(PayloadError) as info:
            m.decode(kind, json.dumps(data).encode())
        assert info.value.field == "id"
        assert "idempotency" in str(info.value)
    assert m.WindowAction(window=1, action="call").id
    events = m.decode(
        m.CallEvent,
        json.dumps({"ticket": "A001", "service": "a", "window": 1, "zone": "z"}).encode(),
    )
    assert events.id, "only commands need an id on the wire"
    schema = m.adapter(m.TicketRequest).json_schema()
    assert all(
        "id" in d["required"] for d in schema["$defs"].values() if "kind" in d.get("properties", {})
    )


def test_what_a_rejection_quotes_is_bounded_and_on_one_line() -> None:
    data = json.dumps(
        {"id": new_ulid(), "window": 1, "action": "call", "x" * 500: 1, "ticket": "A\n\x1b[2J"}
    ).encode()
    with pytest.raises(PayloadError) as info:
        m.decode(m.WindowCommand, data)
    field = info.value.field or ""
    assert len(field) <= 80
    assert field.endswith("...")
    bad = json.dumps(
        {
            "id": new_ulid(),
            "window": 1,
            "action": "call_ticket",
            "ticket": "A1\n12:00 ERROR forged\x1b[2J",
        }
    ).encode()
    with pytest.raises(PayloadError) as info:
        m.decode(m.WindowCommand, bad)
    assert "\n" not in str(info.value)
    assert "\x1b" not in str(info.value)
    m.ErrorReport(topic="t", code="invalid_payload", message=str(info.value), field=field)


def test_reply_must_carry_an_error_exactly_when_not_ok() -> None:
    with pytest.raises(ValueError, match="exactly when ok is false"):
        m.CommandReply(kind="command", corr=new_ulid(), ok=False)
    with pytest.raises(ValueError, match="exactly one of to_service or to_window"):
        m.Transfer(window=1, action="transfer", to_service="a", to_window=2)


def test_ulids_sort_in_creation_order_even_within_one_millisecond() -> None:
    ids = [new_ulid() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 2000
    times = [ulid_time_ms(i) for i in ids]
    assert len(set(times)) < len(ids), "expected several ids in the same millisecond"


def test_ids_of_one_millisecond_encode_their_increment_across_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within a millisecond only the last two characters are encoded anew, until the
    increment carries past them: every id is still the whole 128-bit value's encoding."""
    import time

    import hallq.ulid as ulid

    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)
    ids = [ulid.new_ulid() for _ in range(2500)]  # two carries at least

    def value(text: str) -> int:
        number = 0
        for ch in text:
            number = (number << 5) | ulid._ALPHABET.index(ch)
        return number

    first = value(ids[0])
    assert first >> 80 == 4_000_000_000_000
    assert [value(i) for i in ids] == [first + k for k in range(2500)]
    assert ids == [ulid._encode(first + k) for k in range(2500)]


def test_ulid_encoding_is_crockford_base32_of_the_128_bits() -> None:
    from hallq.ulid import _encode

    assert _encode(0) == "0" * 26
    assert _encode(2**128 - 1) == "7" + "Z" * 25
    assert _encode(31 << 5 | 10) == "0" * 24 + "ZA"
