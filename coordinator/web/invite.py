"""Invitations (主动预约): taxpayers whose history shows complex business, offered a slot on
a quiet day, and what came of it.

Who: over the last ``LOOKBACK_DAYS`` days of the event log, identities (the keyed hash the
dispenser's ID reader made; the desk never sees more than its first characters) whose
tickets took long at the counter -- at least ``COMPLEX_FACTOR`` times the service's mean
and ``COMPLEX_MIN_S`` -- or who came back for the same service on several days (business
not finished in one visit). When: bookable slots the comfort index (办税舒适度指数) rates
较少 (quiet), with a free place. What came of it: each invitation is a booking the desk made
(note ``主动预约``); it is accepted when the taxpayer takes a ticket under its code, declined
when the desk cancels it on their answer.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coordinator.web.figures import Past

__all__ = ["INVITE_NOTE", "Candidate", "complex_candidates"]

LOOKBACK_DAYS = 28
COMPLEX_FACTOR = 1.5
COMPLEX_MIN_S = 20 * 60.0
RETURN_VISITS = 2  # the same service on this many days: not finished in one visit
INVITE_NOTE = "主动预约"
REF_LEN = 16  # what the desk's page holds of a hash: enough to find it again


@dataclass
class Candidate:
    person: str  # the keyed hash (kept server-side)
    long_visits: int = 0
    days: set[dt.date] = field(default_factory=set)
    by_service: dict[str, float] = field(default_factory=dict)  # counter seconds
    days_by_service: dict[str, set[dt.date]] = field(default_factory=dict)
    longest_s: float = 0.0
    last: dt.date | None = None

    @property
    def ref(self) -> str:
        return self.person[:REF_LEN]

    @property
    def service(self) -> str:
        """The service to invite for: where most of their counter time went."""
        return max(self.by_service, key=lambda c: self.by_service[c])

    @property
    def returns(self) -> int:
        return max((len(d) for d in self.days_by_service.values()), default=0)

    def score(self) -> tuple[int, int, float]:
        return (self.long_visits, self.returns, self.longest_s)


def complex_candidates(
    days: Iterable[tuple[dt.date, Sequence[Past]]],
    *,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    limit: int = 20,
) -> list[Candidate]:
    """The people whose history shows complex business, most complex first."""
    took: dict[str, list[float]] = {}  # every ticket's counter time sets the norm
    tickets = []
    for day, ts in days:
        for t in ts:
            s = _service_s(t)
            if s is not None:
                took.setdefault(t.service, []).append(s)
            if t.identity:
                tickets.append((day, t))
    mean = {c: statistics.fmean(xs) for c, xs in took.items() if xs}
    found: dict[str, Candidate] = {}
    for day, t in tickets:
        assert t.identity is not None
        if t.identity in exclude:
            continue
        c = found.setdefault(t.identity, Candidate(t.identity))
        c.days.add(day)
        c.days_by_service.setdefault(t.service, set()).add(day)
        c.last = max(c.last or day, day)
        s = _service_s(t) or 0.0
        c.by_service[t.service] = c.by_service.get(t.service, 0.0) + s
        c.longest_s = max(c.longest_s, s)
        if s >= max(COMPLEX_MIN_S, COMPLEX_FACTOR * mean.get(t.service, 0.0)):
            c.long_visits += 1
    chosen = [c for c in found.values() if c.long_visits or c.returns >= RETURN_VISITS]
    return sorted(chosen, key=lambda c: c.score(), reverse=True)[:limit]


def reason(c: Candidate, names: dict[str, str]) -> str:
    """Why this person, in the words the desk shows."""
    parts = []
    if c.long_visits:
        parts.append(f"{c.long_visits} 次办理时间长 (最长 {c.longest_s / 60:.0f} 分钟)")
    if c.returns >= RETURN_VISITS:
        svc = max(c.days_by_service, key=lambda s: len(c.days_by_service[s]))
        parts.append(f"{len(c.days_by_service[svc])} 天来办{names.get(svc, svc)}")
    return "; ".join(parts)


def _service_s(t: Any) -> float | None:
    if t.finished_at is None:
        return None
    return max(0.0, float(t.finished_at - (t.started_at or t.called_at or t.finished_at)))
