"""The wire contract in one table: for each topic, who publishes, who listens, QoS, retain,
payload model, and whether a publish may wait in the outbox while the broker is away.

``mqtt_topics.md`` is rendered from this table (``python -m hallq.contract --write``) and a
test fails when the two disagree, so the document can never drift from the code.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hallq import messages as m
from hallq.errors import TopicError
from hallq.topics import (
    CITY,
    CITY_LINK,
    CITY_QUEUE,
    PREFIX,
    Action,
    EventKind,
    Role,
    StateKind,
    TopicParts,
)


@dataclass(frozen=True)
class TopicSpec:
    pattern: str
    publisher: str
    subscribers: str
    qos: int
    retained: bool
    payload_name: str  # a name in hallq.messages; its group loads on first use of .payload
    queue_offline: bool
    expiry_s: int | None
    summary: str
    roles: tuple[Role, ...] = ()
    deadline: bool = False  # a request: it lives exactly as long as its sender waits

    @property
    def expiry_text(self) -> str:
        if self.deadline:
            return "the sender's reply deadline"
        return f"{self.expiry_s} s" if self.expiry_s else "-"

    # published by the coordinator (replies, state, events) rather than by the client the
    # topic names; the broker ACL (hallq/acl.py) is generated from this
    by_coordinator: bool = False

    @property
    def payload(self) -> Any:
        """The payload's model or union (its topic group imported now, if not yet)."""
        return getattr(m, self.payload_name)


DEVICE_ROLES = (Role.WINDOW, Role.DISPENSER, Role.BOARD)
ALL_CLIENTS = tuple(Role)
REPLY_EXPIRY_S = 30

CLIENT_TOPICS: dict[Action, TopicSpec] = {
    Action.CMD: TopicSpec(
        f"{PREFIX}/{{hall}}/{{role}}/{{client}}/cmd",
        "window agent (its pads) or supervisor (dashboard)",
        "coordinator",
        1,
        False,
        "WindowCommand",
        False,
        None,
        "A window command. Never queued offline; it lives as long as the pad waits for the "
        "reply (`edge.command_timeout_s`) and is refused after that: a stale CALL is wrong. "
        "A pad that got no reply asks with `query` whether it happened.",
        (Role.WINDOW, Role.SUPERVISOR),
        deadline=True,
    ),
    Action.REQ: TopicSpec(
        f"{PREFIX}/{{hall}}/dispenser/{{client}}/req",
        "dispenser agent",
        "coordinator",
        1,
        False,
        "TicketRequest",
        True,
        None,
        "Ticket issue, number-block lease, or void of a ticket that could not be printed; "
        "the reply carries `corr` = this `id`. An online issue or lease lives as long as the "
        "dispenser waits for the reply (`edge.reply_timeout_s`, `edge.command_timeout_s`); "
        "offline issues, replayed from the outbox, and voids never expire.",
        (Role.DISPENSER,),
        deadline=True,
    ),
    Action.REPLY: TopicSpec(
        f"{PREFIX}/{{hall}}/{{role}}/{{client}}/reply",
        "coordinator",
        "the client named in the topic",
        1,
        False,
        "Reply",
        False,
        REPLY_EXPIRY_S,
        "Answer to that client's request or command (`corr` = the request's `id`).",
        (Role.WINDOW, Role.DISPENSER, Role.SUPERVISOR),
        by_coordinator=True,
    ),
    Action.STATUS: TopicSpec(
        f"{PREFIX}/{{hall}}/{{role}}/{{client}}/status",
        "the client itself (birth) and the broker (its will)",
        "coordinator, dashboard, boards (coordinator presence), `hallq status`",
        1,
        True,
        "Presence",
        False,
        None,
        "Presence. `boot` rises on every connect; an `offline` whose boot is below the "
        "last `online` seen is stale and ignored.",
        ALL_CLIENTS,
    ),
    Action.HEALTH: TopicSpec(
        f"{PREFIX}/{{hall}}/{{role}}/{{client}}/health",
        "the client itself",
        "coordinator, dashboard, `hallq status`",
        1,
        True,
        "DeviceHealth",
        False,
        None,
        "Device health: link, printer paper, last error, one entry per component.",
        ALL_CLIENTS,
    ),
    Action.ERROR: TopicSpec(
        f"{PREFIX}/{{hall}}/{{role}}/{{client}}/error",
        "the client that rejected an input",
        "dashboard, logs",
        1,
        False,
        "ErrorReport",
        False,
        None,
        "A payload or topic this client rejected, or a handler that failed, with the field.",
        ALL_CLIENTS,
    ),
}

STATE_TOPICS: dict[StateKind, TopicSpec] = {
    StateKind.WINDOW: TopicSpec(
        f"{PREFIX}/{{hall}}/state/window/{{window}}",
        "coordinator",
        "window agents (pad display), boards, dashboard",
        1,
        True,
        "WindowState",
        False,
        None,
        "One window: open/paused/closed, the ticket being served, its skills.",
        by_coordinator=True,
    ),
    StateKind.QUEUE: TopicSpec(
        f"{PREFIX}/{{hall}}/state/queue/{{service}}",
        "coordinator",
        "dispensers, dashboard, ticket pages",
        1,
        True,
        "QueueState",
        False,
        None,
        "One service's queue: waiting count, the next numbers, estimated wait.",
        by_coordinator=True,
    ),
    StateKind.BOARD: TopicSpec(
        f"{PREFIX}/{{hall}}/state/board",
        "coordinator",
        "board agents, dashboard",
        1,
        True,
        "BoardState",
        False,
        None,
        "What the call boards show: the last calls (newest first), waiting per service.",
        by_coordinator=True,
    ),
    StateKind.STATS: TopicSpec(
        f"{PREFIX}/{{hall}}/state/stats",
        "coordinator",
        "dashboard, supervisors",
        1,
        True,
        "StatsState",
        False,
        None,
        "Today's KPIs for the hall, per service and per window.",
        by_coordinator=True,
    ),
    StateKind.COMFORT: TopicSpec(
        f"{PREFIX}/{{hall}}/state/comfort",
        "coordinator",
        "dashboard, WeChat publisher, boards",
        1,
        True,
        "ComfortState",
        False,
        None,
        "办税舒适度指数: the next 30 days by hour (较少/适中/较多), rebuilt daily.",
        by_coordinator=True,
    ),
}

EVENT_TOPICS: dict[EventKind, TopicSpec] = {
    EventKind.CALL: TopicSpec(
        f"{PREFIX}/{{hall}}/event/call",
        "coordinator",
        "voice agents, boards (flash), dashboard",
        1,
        False,
        "CallEvent",
        False,
        None,
        "A ticket called (or recalled) to a window.",
        by_coordinator=True,
    ),
    EventKind.TICKET: TopicSpec(
        f"{PREFIX}/{{hall}}/event/ticket",
        "coordinator",
        "dashboard, ticket pages, voice agents (a withdrawn call)",
        1,
        False,
        "TicketEvent",
        False,
        None,
        "A ticket changed state (issued, served, no-show, transferred...).",
        by_coordinator=True,
    ),
    EventKind.ALERT: TopicSpec(
        f"{PREFIX}/{{hall}}/event/alert",
        "coordinator",
        "dashboard, supervisors",
        1,
        False,
        "AlertEvent",
        False,
        None,
        "Something a supervisor should see: emergency key, device offline, wait target passed.",
        by_coordinator=True,
    ),
}

# Brought in by the city bridge (``hallq bridge``, its own process), never published by
# another hall client: the ACL lets only its login (``city-bridge``) write under city/.
CITY_TOPICS: dict[str, TopicSpec] = {
    CITY_QUEUE: TopicSpec(
        f"{PREFIX}/{{hall}}/city/{{nearby}}/queue/{{service}}",
        "the city bridge, `hallq bridge` (a nearby hall's `state/queue/{service}`)",
        "coordinator (nearby halls on the ticket and booking pages)",
        1,
        True,
        "QueueState",
        False,
        None,
        "A nearby hall's queue summary, as that hall published it to the city broker; only "
        "the halls the hall file lists in `[city] nearby` are brought in.",
    ),
    CITY_LINK: TopicSpec(
        f"{PREFIX}/{{hall}}/city/link",
        "the city bridge, `hallq bridge` (its will sets 0 if it dies)",
        "coordinator (nearby halls are shown only while it is 1)",
        1,
        True,
        "CityLinkState",
        False,
        None,
        "Whether the city bridge is connected: `1` or `0`, a bare number. While it is `0` "
        "the nearby halls' summaries may be old and are not shown.",
    ),
}

ALL_TOPICS: tuple[TopicSpec, ...] = (
    *CLIENT_TOPICS.values(),
    *STATE_TOPICS.values(),
    *EVENT_TOPICS.values(),
    *CITY_TOPICS.values(),
)


def spec_for(parts: TopicParts) -> TopicSpec:
    """The spec of a parsed topic; a client topic of a role it does not apply to is an error."""
    if parts.role == "state":
        return STATE_TOPICS[StateKind(parts.action)]
    if parts.role == "event":
        return EVENT_TOPICS[EventKind(parts.action)]
    if parts.role == CITY:
        return CITY_TOPICS[parts.action]
    spec = CLIENT_TOPICS[Action(parts.action)]
    if Role(parts.role) not in spec.roles:
        raise TopicError(
            f"'{parts.action}' topics are not used by role '{parts.role}' "
            f"(only {', '.join(r.value for r in spec.roles)})"
        )
    return spec


def receivable(topic_filter: str) -> tuple[TopicSpec, ...]:
    """The specs of every topic a subscription to ``topic_filter`` can bring in."""
    levels = topic_filter.split("/")
    return tuple(spec for spec in ALL_TOPICS if _overlap(levels, spec))


def _overlap(levels: list[str], spec: TopicSpec) -> bool:
    pattern = spec.pattern.split("/")
    roles = {role.value for role in spec.roles}
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(pattern):
            return False
        slot = pattern[i]
        if level in ("+", slot):
            continue
        if (slot == "{role}" and level not in roles) or not slot.startswith("{"):
            return False
    return len(levels) == len(pattern)


# --- the generated part of mqtt_topics.md ---------------------------------------------------

BEGIN = "<!-- BEGIN GENERATED: python -m hallq.contract --write mqtt_topics.md -->"
END = "<!-- END GENERATED -->"


def _payload_types() -> list[Any]:
    seen: list[Any] = []
    for spec in ALL_TOPICS:
        if spec.payload not in seen:
            seen.append(spec.payload)
    return seen


def render_generated() -> str:
    lines = [
        BEGIN,
        "",
        "## Topics",
        "",
        "| topic | publisher | subscribers | QoS | retained | outbox | expiry | payload |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in ALL_TOPICS:
        pattern = f"`{spec.pattern}`"
        if spec.roles and "{role}" in spec.pattern:
            pattern += f" (role: {' / '.join(r.value for r in spec.roles)})"
        lines.append(
            f"| {pattern} | {spec.publisher} | {spec.subscribers} | {spec.qos} | "
            f"{'yes' if spec.retained else 'no'} | {'yes' if spec.queue_offline else 'no'} | "
            f"{spec.expiry_text} | "
            f"[{spec.payload_name}](#{spec.payload_name.lower()}) |"
        )
    lines += ["", "What each topic is for:", ""]
    for spec in ALL_TOPICS:
        lines.append(f"- `{spec.pattern}`: {spec.summary}")
    lines += ["", "## Payload schemas", ""]
    for payload in _payload_types():
        name = str(getattr(payload, "__name__", payload))
        schema = m.adapter(payload).json_schema(mode="validation")
        lines += [
            f"### {name}",
            "",
            "```json",
            json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True),
            "```",
            "",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(document: str) -> str:
    """Replace the generated section of ``document`` with a fresh rendering."""
    try:
        head, rest = document.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"the document has no {BEGIN!r} ... {END!r} section") from None
    return head + render_generated().rstrip("\n") + tail


def main(argv: list[str] | None = None) -> int:
    import argparse  # only for this command: every agent imports the contract (~0.4 MB)

    parser = argparse.ArgumentParser(description="Regenerate the schema part of mqtt_topics.md")
    parser.add_argument("--write", metavar="FILE", type=Path, required=True)
    args = parser.parse_args(argv)
    path: Path = args.write
    path.write_text(splice(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
