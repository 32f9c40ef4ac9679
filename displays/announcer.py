"""The voice-call queue of one speaker: one announcement at a time, none of them stale.

Rules, each pinned by a test in ``tests/test_displays_voice.py``:

- never two at once: a single task synthesises and plays, in arrival order;
- a recall is a new announcement: the same words again;
- an announcement still waiting when a newer call for the same window arrives is dropped
  (the window has moved on: "A023 to 15" must not be heard after "A024 to 15");
- a call event older than ``max_age`` (a backlog delivered after the agent reconnects) is
  dropped rather than announced minutes late;
- the same event delivered twice (MQTT QoS 1 is at-least-once) is announced once;
- a call withdrawn before it was heard (the ticket voided: its key press was issued
  offline instead, nobody holds it) is dropped.

What happened to each call is kept in ``log`` (played / superseded / withdrawn / too_old /
failed), so
tests and the demo can see it without timing anything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Self

from displays.errors import VoiceError
from displays.players import Player
from displays.voice import Synthesizer, call_words
from hallq.aio import BackgroundTasks
from hallq.messages import CallEvent

__all__ = ["Announcement", "Announcer", "Outcome"]

log = logging.getLogger("displays.announcer")

Outcome = Literal["played", "superseded", "withdrawn", "too_old", "failed"]
_REMEMBERED_IDS = 1024


@dataclass(frozen=True, slots=True)
class Announcement:
    event: CallEvent
    seq: int  # arrival order

    @property
    def words(self) -> list[str]:
        return call_words(self.event.ticket, self.event.window)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Announcer:
    """``async with Announcer(voice, player) as a: a.submit(event)``; owns its player task."""

    def __init__(
        self,
        voice: Synthesizer,
        player: Player,
        *,
        zone: str | None = None,
        zones: frozenset[str] | None = None,
        max_age: dt.timedelta | None = dt.timedelta(minutes=2),
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        """``zones``: with no ``zone``, the zones it speaks for (its building's, in a
        hall of several); None: every zone."""
        self.voice = voice
        self.player = player
        self.zone = zone
        self.zones = zones if zone is None else None
        self.max_age = max_age
        self.clock = clock
        self.log: list[tuple[Announcement, Outcome]] = []
        self.playing: Announcement | None = None
        self._queue: deque[Announcement] = deque()
        self._latest: dict[int, int] = {}  # window -> seq of its newest call
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._withdrawn: OrderedDict[tuple[str, int], None] = OrderedDict()  # (ticket, window)
        self._seq = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._background = BackgroundTasks("announcer")

    def __repr__(self) -> str:
        return f"Announcer(zone={self.zone}, queued={len(self._queue)})"

    async def __aenter__(self) -> Self:
        if not self._background:
            self._background.spawn(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._background.close()

    def submit(self, event: CallEvent) -> bool:
        """Queue a call or recall; False when it is not for this speaker or already seen."""
        if (self.zone is not None and event.zone != self.zone) or (
            self.zones is not None and event.zone not in self.zones
        ):
            return False
        if event.id in self._ids:
            return False
        self._ids[event.id] = None
        if len(self._ids) > _REMEMBERED_IDS:
            self._ids.popitem(last=False)
        self._seq += 1
        item = Announcement(event, self._seq)
        self._latest[event.window] = item.seq
        self._queue.append(item)
        self._idle.clear()
        self._wake.set()
        return True

    def withdraw(self, ticket: str, window: int) -> None:
        """The call of ``ticket`` to ``window`` was withdrawn: not to be heard if it still
        waits (or is being synthesised); one being played plays out."""
        self._withdrawn[(ticket, window)] = None
        if len(self._withdrawn) > _REMEMBERED_IDS:
            self._withdrawn.popitem(last=False)

    async def idle(self) -> None:
        """Wait until everything submitted has been played or dropped."""
        await self._idle.wait()

    def played(self) -> list[str]:
        """``"A023@15"`` for each announcement played, in order: for tests and the demo."""
        return [f"{a.event.ticket}@{a.event.window}" for a, o in self.log if o == "played"]

    def _stale(self, item: Announcement) -> Outcome | None:
        if self._latest.get(item.event.window, item.seq) > item.seq:
            return "superseded"
        if (item.event.ticket, item.event.window) in self._withdrawn:
            return "withdrawn"
        if self.max_age is not None and self.clock() - item.event.ts > self.max_age:
            return "too_old"
        return None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue.popleft()
            outcome = self._stale(item)
            if outcome is None:
                outcome = await self._announce(item)
            else:
                log.info(
                    "dropped %s at window %d: %s", item.event.ticket, item.event.window, outcome
                )
            self.log.append((item, outcome))

    async def _announce(self, item: Announcement) -> Outcome:
        try:
            wav = await self.voice.synthesize(item.words)
            if (late := self._stale(item)) is not None:  # superseded while synthesising
                return late
            self.playing = item
            await self.player.play(wav)
        except VoiceError as exc:
            log.error(
                "cannot announce %s at window %d: %s", item.event.ticket, item.event.window, exc
            )
            return "failed"
        except Exception:  # one broken clip or player must not silence the hall for the day
            log.exception("unexpected error announcing %s", item.event.ticket)
            return "failed"
        finally:
            self.playing = None
        return "played"
