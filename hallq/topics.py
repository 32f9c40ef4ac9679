"""The MQTT topic tree: builders, a parser and the id rules that make broker ACLs work.

Every id that becomes a topic level (hall, client, service code) is checked here once, so a
``+``, ``#``, ``/`` or empty level can never reach the broker.

The tree (``mqtt_topics.md`` is generated from :mod:`hallq.contract`)::

    hallq/v1/{hall}/{role}/{client}/{action}   a client's own topics (cmd, req, reply,
                                              status, health, error)
    hallq/v1/{hall}/state/{kind}[/{key}]       retained state published by the coordinator
    hallq/v1/{hall}/event/{kind}               events published by the coordinator
    hallq/v1/{hall}/city/{other}/queue/{service}  a nearby hall's queue summary, brought in
                                              by the city bridge (``hallq bridge``)
    hallq/v1/{hall}/city/link                  the city bridge's link state (1 up, 0 down)

A client publishes only under its own ``{role}/{client}`` level (the coordinator also
publishes ``state``, ``event`` and the clients' ``reply`` topics), so a broker ACL pattern
on ``%c`` can confine each device.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from paho.mqtt.client import topic_matches_sub

from hallq.errors import TopicError

ROOT = "hallq"
VERSION = "v1"
PREFIX = f"{ROOT}/{VERSION}"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
WINDOW_KEY = re.compile(r"^[1-9][0-9]{0,2}$")


class Role(StrEnum):
    """What a client is; the topic level right after the hall id."""

    WINDOW = "window"
    DISPENSER = "dispenser"
    BOARD = "board"
    COORDINATOR = "coordinator"
    SUPERVISOR = "supervisor"


class Action(StrEnum):
    """The last level of a client's own topic."""

    CMD = "cmd"
    REQ = "req"
    REPLY = "reply"
    STATUS = "status"
    HEALTH = "health"
    ERROR = "error"


class StateKind(StrEnum):
    """Retained state the coordinator publishes; WINDOW and QUEUE carry a key level."""

    WINDOW = "window"
    QUEUE = "queue"
    BOARD = "board"
    STATS = "stats"
    COMFORT = "comfort"


class EventKind(StrEnum):
    CALL = "call"
    TICKET = "ticket"
    ALERT = "alert"


KEYED_STATE = frozenset({StateKind.WINDOW, StateKind.QUEUE})
STATE = "state"
EVENT = "event"
# What the city bridge brings into a hall: other halls' queue summaries and its own link
# state. Nobody in the hall may publish there (the ACL lists no writer); only the hall
# broker's bridge does, so a device cannot fake a quieter hall.
CITY = "city"
CITY_QUEUE = "queue"
CITY_LINK = "link"


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it can be a whole topic level, else raise ``TopicError``."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise TopicError(
            f"{what} {value!r} is not a valid id: use 1-32 characters a-z 0-9 _ -, "
            "starting with a letter or digit (no '/', '+', '#', spaces or upper case)"
        )
    return value


def _enum(kind: type[StrEnum], value: str, what: str) -> str:
    try:
        return kind(value).value
    except ValueError:
        raise TopicError(f"{what} {value!r} is not one of {', '.join(kind)}") from None


def _check_window(window: int | str) -> str:
    key = str(window)
    if not WINDOW_KEY.fullmatch(key):
        raise TopicError(f"window {window!r} is not a window number 1-999")
    return key


def _role(value: str | Role) -> Role:
    return Role(_enum(Role, value, "role"))


@dataclass(frozen=True, slots=True)
class TopicParts:
    """A parsed topic. ``client`` is set for a client's own topics, ``key`` for keyed state."""

    hall: str
    role: str
    client: str | None
    action: str
    key: str | None = None


# topics are built for every message sent (a reply, events): each once, and checked once
@functools.lru_cache(maxsize=4096)
def _client_topic(hall: str, role: str | Role, client: str, action: str | Action) -> str:
    return f"{PREFIX}/{hall}/{_role(role)}/{check_id(client, 'client id')}/{Action(action)}"


@functools.lru_cache(maxsize=64)
def _event_topic(hall: str, kind: str | EventKind) -> str:
    return f"{PREFIX}/{hall}/{EVENT}/{EventKind(kind)}"


@dataclass(frozen=True, slots=True)
class HallTopics:
    """Builds every topic and subscription filter of one hall."""

    hall: str

    def __post_init__(self) -> None:
        check_id(self.hall, "hall id")

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.hall}"

    def client(self, role: str | Role, client: str, action: str | Action) -> str:
        return _client_topic(self.hall, role, client, action)

    def cmd(self, role: str | Role, client: str) -> str:
        return self.client(role, client, Action.CMD)

    def req(self, client: str) -> str:
        return self.client(Role.DISPENSER, client, Action.REQ)

    def reply(self, role: str | Role, client: str) -> str:
        return self.client(role, client, Action.REPLY)

    def status(self, role: str | Role, client: str) -> str:
        return self.client(role, client, Action.STATUS)

    def health(self, role: str | Role, client: str) -> str:
        return self.client(role, client, Action.HEALTH)

    def error(self, role: str | Role, client: str) -> str:
        return self.client(role, client, Action.ERROR)

    def window_state(self, window: int) -> str:
        return f"{self.base}/{STATE}/{StateKind.WINDOW}/{_check_window(window)}"

    def queue_state(self, service: str) -> str:
        return f"{self.base}/{STATE}/{StateKind.QUEUE}/{check_id(service, 'service code')}"

    def board_state(self) -> str:
        return f"{self.base}/{STATE}/{StateKind.BOARD}"

    def stats_state(self) -> str:
        return f"{self.base}/{STATE}/{StateKind.STATS}"

    def comfort_state(self) -> str:
        return f"{self.base}/{STATE}/{StateKind.COMFORT}"

    def event(self, kind: str | EventKind) -> str:
        return _event_topic(self.hall, kind)

    def every(self, action: str | Action, role: str | Role | None = None) -> str:
        """Filter for one action of all clients (of one role, or of every role)."""
        role_level = "+" if role is None else _role(role).value
        return f"{self.base}/{role_level}/+/{Action(action)}"

    def all_state(self) -> str:
        return f"{self.base}/{STATE}/#"

    def all_events(self) -> str:
        return f"{self.base}/{EVENT}/+"

    def city_prefix(self, other: str) -> str:
        """Where another hall's summaries land in this hall's broker (ends with ``/``)."""
        return f"{self.base}/{CITY}/{check_id(other, 'nearby hall id')}/"

    def city_queue(self, other: str, service: str) -> str:
        return f"{self.city_prefix(other)}{CITY_QUEUE}/{check_id(service, 'service code')}"

    def city_queues(self) -> str:
        return f"{self.base}/{CITY}/+/{CITY_QUEUE}/+"

    def city_link(self) -> str:
        return f"{self.base}/{CITY}/{CITY_LINK}"


def _parse_city(rest: list[str]) -> tuple[str, str | None, str, str | None]:
    """``city/link`` or ``city/{other}/queue/{service}``: role ``city``, the other hall
    as the client, the service as the key."""
    if rest == [CITY, CITY_LINK]:
        return CITY, None, CITY_LINK, None
    if len(rest) != 4 or rest[2] != CITY_QUEUE:
        raise TopicError("city topics are city/link or city/{hall}/queue/{service}")
    return CITY, check_id(rest[1], "nearby hall id"), CITY_QUEUE, check_id(rest[3], "service code")


def _parse_rest(rest: list[str]) -> tuple[str, str | None, str, str | None]:
    head = rest[0]
    if head == CITY:
        return _parse_city(rest)
    if head == STATE:
        if len(rest) < 2:
            raise TopicError("state topic without a kind")
        kind = StateKind(_enum(StateKind, rest[1], "state kind"))
        if kind in KEYED_STATE:
            if len(rest) != 3:
                raise TopicError(f"state/{kind} needs exactly one key level")
            if kind is StateKind.WINDOW:
                return STATE, None, kind.value, _check_window(rest[2])
            return STATE, None, kind.value, check_id(rest[2], "service code")
        if len(rest) != 2:
            raise TopicError(f"state/{kind} takes no further levels")
        return STATE, None, kind.value, None
    if head == EVENT:
        if len(rest) != 2:
            raise TopicError("event topics are event/{kind}")
        return EVENT, None, _enum(EventKind, rest[1], "event kind"), None
    if len(rest) != 3:
        raise TopicError("client topics are {role}/{client}/{action}")
    role = _role(head).value
    return role, check_id(rest[1], "client id"), _enum(Action, rest[2], "action"), None


def parse(topic: str) -> TopicParts:
    """Split a concrete topic into its parts; raise ``TopicError`` saying what is wrong."""
    try:
        if not topic:
            raise TopicError("empty topic")
        if "+" in topic or "#" in topic:
            raise TopicError("wildcards '+' and '#' are not allowed in a concrete topic")
        levels = topic.split("/")
        if "" in levels:
            raise TopicError("empty level (leading, trailing or double '/')")
        if len(levels) < 5 or levels[0] != ROOT or levels[1] != VERSION:
            raise TopicError(f"not under {PREFIX}/{{hall}}/...")
        hall = check_id(levels[2], "hall id")
        role, client, action, key = _parse_rest(levels[3:])
    except TopicError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from None
    return TopicParts(hall, role, client, action, key)


def check_filter(topic_filter: str) -> str:
    """Return a subscription filter if its wildcards are well formed."""
    if not topic_filter:
        raise TopicError("empty topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError(f"filter {topic_filter!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise TopicError(f"filter {topic_filter!r}: '+' must be a whole level")
    return topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    return bool(topic_matches_sub(topic_filter, topic))
