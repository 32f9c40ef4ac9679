"""Who may tell the coordinator what, checked again at the coordinator.

The broker's ACL (``hallq provision``) already confines every login to its own topics, but a
mis-configured or replaced broker must not turn the hall over to whoever can reach it. So a
command that arrives over MQTT is checked here before it touches the queue or the event log:
the sender is the ``{role}/{client}`` of its topic (which the ACL binds to the login), and
that sender must be allowed to issue this command for this window or service by the hall
file. A refusal changes nothing: it is answered on the sender's reply topic with the
reason, logged, and raised to supervisors as an alert (at most once a minute per sender).

It also keeps a token bucket per sender, asked before a message is even parsed, so one
flooding device cannot starve the others; the coordinator names it in an alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hallq import messages as m
from hallq.config import HallConfig
from hallq.payloads.window import pad_may_send
from hallq.topics import PREFIX

ALERT_EVERY_S = 60.0
# ticket priorities only a guide decides (Agent.priorities); appointment goes by its code
GUIDED = frozenset({m.Priority.GREEN, m.Priority.ASSISTED})


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str

    def record(self) -> dict[str, Any]:
        """The shape of a logged result (coordinator.hallqueue.record_of), for the reply."""
        return {
            "ok": False,
            "error": {"code": self.code, "message": self.message},
            "ticket": None,
            "info": None,
            "lease": None,
        }


# printed for the person at the kiosk (edge.dispenser prints a refusal's message)
ISSUE_PACED = Refusal("issue_paced", "本机取号过于频繁, 请稍候再取")
# an offline replay past its pace: the dispenser holds it and sends it again later
REPLAY_PACED = Refusal("replay_paced", "offline tickets replayed faster than a kiosk prints")


@dataclass
class _Bucket:
    tokens: float
    at: float
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Grant:
    """What the hall file lets one agent do."""

    role: str
    windows: frozenset[int]
    services: frozenset[str]
    priorities: frozenset[str] = frozenset()


class Grants:
    """Each agent's grant, looked up in the hall file once (every command asks: the
    config's own lookups go through pydantic's private attributes and build lists, ~4 µs);
    a name it does not know is not kept, so a flood of made-up names keeps nothing."""

    def __init__(self, cfg: HallConfig) -> None:
        self.cfg = cfg
        self._known: dict[str, Grant] = {}

    def get(self, client: str) -> Grant | None:
        grant = self._known.get(client)
        if grant is None:
            try:
                agent = self.cfg.agent(client)
            except KeyError:
                return None
            grant = self._known[client] = Grant(
                agent.role,
                frozenset(self.cfg.windows_for_agent(client)),
                frozenset(self.cfg.services_for_agent(client)),
                frozenset(agent.priorities),
            )
        return grant


@dataclass
class Authority:
    """The hall file's answer to "may this sender do that"; one per coordinator."""

    cfg: HallConfig
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _alerted: dict[tuple[str, str], float] = field(default_factory=dict)
    _issued: dict[str, _Bucket] = field(default_factory=dict)  # per dispenser (configured)
    _replayed: dict[str, _Bucket] = field(default_factory=dict)  # ...and its offline replays
    _grants: Grants = field(init=False)

    def __post_init__(self) -> None:
        self._grants = Grants(self.cfg)

    @property
    def supervisors(self) -> list[str]:
        return self.cfg.security.supervisor_clients

    def check(
        self, kind: str, role: str, client: str, command: Any, *, retained: bool = False
    ) -> Refusal | None:
        """Why ``role/client`` may not have ``command`` applied, or None when it may."""
        if retained:
            return Refusal(
                "retained_command",
                "a retained command is never applied: it would run again at "
                "every reconnect; publish commands without retain",
            )
        if kind == "window" and role == "supervisor":
            if client not in self.supervisors:
                return Refusal(
                    "not_a_supervisor",
                    f"{client} is not a supervisor console of this hall "
                    "(security.supervisor_clients)",
                )
            return None
        grant = self._grants.get(client)
        if grant is None:
            return Refusal("unknown_device", f"{client} is not an agent of hall {self.cfg.hall.id}")
        if grant.role != role:
            return Refusal("wrong_role", f"{client} is configured as a {grant.role}, not a {role}")
        if kind == "window":
            if role != "window":
                return Refusal("wrong_role", f"a {role} does not send window commands")
            if command.window not in grant.windows:
                return Refusal(
                    "not_your_window", f"{client} may not act for window {command.window}"
                )
            if not pad_may_send(command):
                return Refusal(
                    "not_a_pad_action",
                    f"{client} is a window Pi: {command.action}"
                    f"{' of a named ticket' if command.action == 'transfer' else ''} is a "
                    "supervisor's (the desk, or a console in security.supervisor_clients)",
                )
            return None
        if role != "dispenser":
            return Refusal("wrong_role", f"a {role} does not request tickets")
        service = getattr(command, "service", None)
        if service is not None and service not in grant.services:
            return Refusal(
                "not_your_service", f"{client} does not issue tickets for {service[:40]}"
            )
        priority = getattr(command, "priority", None)
        if priority in GUIDED and priority not in grant.priorities:
            return Refusal(
                "priority_not_allowed",
                f"{client} may not issue {priority} tickets (its agents.priorities in the hall "
                "file: a 导税 guide's kiosk)",
            )
        return None

    def claim(self, owner: str | None, role: str, client: str) -> Refusal | None:
        """A command id is its sender's: another sender repeating it gets nothing of it."""
        if owner is None or owner == f"{role}/{client}":
            return None
        return Refusal(
            "id_taken",
            "this command id was already used by another sender; every command needs a new id",
        )

    # --- flooding ----------------------------------------------------------------------

    def admit(self, topic: str) -> bool:
        """One message from the client named in ``topic``: within its rate? Topics that
        name no client (state, events) are not the clients' to send, and pass."""
        levels = topic.split("/")
        if len(levels) != 6 or f"{levels[0]}/{levels[1]}" != PREFIX:
            return True
        sender = f"{levels[3]}/{levels[4]}"[:80]
        sec = self.cfg.security
        now = self.clock()
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) > 10_000:  # made-up senders must not grow this forever
                self._buckets.clear()
            bucket = self._buckets[sender] = _Bucket(float(sec.client_burst), now)
        bucket.tokens = min(
            float(sec.client_burst), bucket.tokens + (now - bucket.at) * sec.client_rate_per_s
        )
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        bucket.dropped += 1
        return False

    def pace_issue(self, client: str, now: float, *, replay: bool = False) -> Refusal | None:
        """One more ticket issued by dispenser ``client`` at hall time ``now``: refused
        past ``security.issue_rate_per_min`` (and its burst). A kiosk prints one ticket
        every few seconds; a script with its password issues hundreds a second, and a
        service's numbers (its daily cap, its digits) run out before anybody can suspend
        it. Offline replays (``replay``) have a bucket of their own, as deep as the
        numbers a dispenser may hold leased (``edge.lease_cap``: what one outage can
        print), refilled at the same pace: after an outage they all come at once, and
        its online issuing goes on; a script leasing and "replaying" block after block
        (18 a second) is held to a kiosk's pace, its replays sent again later."""
        sec = self.cfg.security
        book, depth = (
            (self._replayed, self.cfg.edge.lease_cap + sec.issue_burst)
            if replay
            else (self._issued, sec.issue_burst)
        )
        bucket = book.get(client)
        if bucket is None:
            bucket = book[client] = _Bucket(float(depth), now)
        gained = max(0.0, now - bucket.at) * sec.issue_rate_per_min / 60.0
        bucket.tokens = min(float(depth), bucket.tokens + gained)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        bucket.dropped += 1
        return REPLAY_PACED if replay else ISSUE_PACED

    def dropped(self, sender: str) -> int:
        bucket = self._buckets.get(sender)
        return bucket.dropped if bucket else 0

    def should_alert(self, sender: str, why: str) -> bool:
        """At most one alert a minute per sender and reason, so an attack cannot flood
        the supervisors in turn."""
        now = self.clock()
        key = (sender, why)
        if now - self._alerted.get(key, -ALERT_EVERY_S) < ALERT_EVERY_S:
            return False
        if len(self._alerted) > 10_000:
            self._alerted.clear()
        self._alerted[key] = now
        return True


def flood_alert(role: str, client: str, rate: float) -> m.AlertEvent:
    return m.AlertEvent(
        severity="warning",
        kind="client_flood",
        client=client[:32] or None,
        message=f"{role} {client} sends more than {rate:g} messages a second; "
        "the excess is dropped"[:200],
    )


def refusal_alert(role: str, client: str, refusal: Refusal) -> m.AlertEvent:
    return m.AlertEvent(
        severity="warning",
        kind="command_refused",
        client=client,
        message=f"{role} {client}: {refusal.code}: {refusal.message}"[:200],
    )
