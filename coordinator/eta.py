"""Wait estimates a taxpayer can trust: each waiting ticket's call, predicted by playing the
hall forward from its real state with its real dispatch policy.

A refresh copies the hall as it is now (every waiting ticket at its real issue time and
class, each busy window's ticket and how long it has been at the counter, the open
windows' skills), then plays it forward on the compiled day loop (``FastHall``: the same
``DispatchCore`` the coordinator calls with) ``replications`` times: counter times drawn
from each service's distribution (learned from the event log when given, else the
engine's recent counter times), a busy window's remaining time drawn given how long it
has already served, no-shows at today's rate, arrivals at the last half hour's rate.
Each ticket's call times over the replications give its likeliest wait and the range
that holds 8 calls in 10; a probe per service, issued at the refresh and taking no
counter time, gives the wait of a ticket issued now. Between refreshes a ticket keeps its
predicted call time; a ticket issued since gets its queue's.

The cost is the replications' simulated days (a few ms each on Liwan); ``due`` spaces the
refreshes so they take at most ``budget`` of one core (see BENCHMARKS.md).
"""

from __future__ import annotations

import collections
import functools
import heapq
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.engine import Engine, Ticket
from coordinator.simulation.day import NO_SHOW_WAIT_S, FastHall, epoch_of, sim_config
from coordinator.simulation.profile import SERVICE_SIGMA, Arrival, DayArrivals, Demand, open_spans
from coordinator.simulation.sites import lane_code, lanes_config
from hallq import messages as m
from hallq.messages import TicketState, WindowStatus

RATE_LOOKBACK_S = 1800.0  # arrivals expected at the rate of the last half hour
# An open window left idle this long while its services have people waiting has nobody
# at it (a clerk at it would have called): it is left out until it calls again.
UNSTAFFED_S = 120.0
HORIZON_S = 3600.0  # arrivals are drawn this far ahead (all waiting are called anyway)
# ...or, for a service arriving faster than this many an hour, as far as that many take:
# in a burst an hour of arrivals was 72,000 draws a replication at 20 tickets/s (0.7 s of
# a core a refresh, traced under the load bench), for a future nobody waiting lives to see
FUTURE_ARRIVALS_MAX = 1000
# Minutes added on each side of a range: the replications' own spread misses that a
# refresh is up to seconds old when it is read (set on the average filing day, 0.05;
# bench/eta.py --spread tries others, BENCHMARKS.md has the table).
SPREAD = 0.05
LOW_Q, HIGH_Q = 0.1, 0.9
_NORMAL = statistics.NormalDist()


@dataclass(frozen=True)
class _Pred:
    """A ticket's predicted call, epoch seconds: likeliest, and the 80% range."""

    p50: float
    low: float
    high: float


@dataclass
class Snapshot:
    """One refresh's predictions: per waiting ticket number, and per service the wait of a
    ticket issued at ``at`` (seconds)."""

    at: float
    tickets: dict[str, _Pred]
    queue: dict[str, tuple[float, float, float]]
    cost_s: float = 0.0
    paused: frozenset[str] = frozenset()  # services a paused window may come back to


class RecentArrivals:
    """How many of the day's tickets each service had issued in the last RATE_LOOKBACK_S,
    kept as tickets are added: the capture's arrival rate. A pass back over the day's tail
    to the first older ticket stopped short at a ticket issued offline long before and
    added late (the rate read as if nothing had been issued since, for up to half an
    hour), and cost the whole day at every refresh in a burst (9.6 ms at 37,000 tickets).
    Here each ticket costs once: taken in as it comes, let go as it ages out."""

    def __init__(self, key: Callable[[Ticket], str] = lambda t: t.service) -> None:
        self._key = key  # what a ticket counts for: its service, or its service's lane
        self._for: list[Ticket] | None = None
        self._seen = 0  # tickets of ``_for`` taken in
        self._in_order: collections.deque[tuple[float, str]] = collections.deque()
        self._late: list[tuple[float, int, str]] = []  # counted, out of issue order
        self._ahead: list[tuple[float, int, str]] = []  # issued after ``now`` when seen
        self._counts: dict[str, int] = {}
        self._now = -math.inf

    def counts(self, tickets: list[Ticket], now: float) -> dict[str, int]:
        """Per service, the tickets issued in [now - RATE_LOOKBACK_S, now]; ``tickets``
        only ever grows (the engine's day; another list starts over, as does a clock that
        went back). A ticket counts for the service it had when first seen here: a
        transfer later does not move its arrival."""
        if tickets is not self._for or now < self._now:
            self._for, self._seen = tickets, 0
            self._in_order, self._late, self._ahead, self._counts = collections.deque(), [], [], {}
        self._now = now
        cutoff = now - RATE_LOOKBACK_S
        in_order, late, ahead, counts = self._in_order, self._late, self._ahead, self._counts
        key = self._key
        for k in range(self._seen, len(tickets)):
            t = tickets[k]
            at, code = t.issued_at, key(t)
            if at > now:
                heapq.heappush(ahead, (at, k, code))
            elif at >= cutoff:
                if not in_order or at >= in_order[-1][0]:
                    in_order.append((at, code))
                else:
                    heapq.heappush(late, (at, k, code))
                counts[code] = counts.get(code, 0) + 1
        self._seen = len(tickets)
        while ahead and ahead[0][0] <= now:
            at, k, service = heapq.heappop(ahead)
            if at >= cutoff:
                heapq.heappush(late, (at, k, service))
                counts[service] = counts.get(service, 0) + 1
        while in_order and in_order[0][0] < cutoff:
            counts[in_order.popleft()[1]] -= 1
        while late and late[0][0] < cutoff:
            counts[heapq.heappop(late)[2]] -= 1
        return counts


class WaitEstimator:
    """Predicted waits for a hall's tickets; attach with ``engine.estimator = est``.

    ``refresh(now)`` simulates (synchronously; the coordinator runs ``capture`` on its loop
    and ``simulate`` in a worker thread, which plays the hall in a forked child);
    ``estimate`` answers from the last refresh, or returns ``None`` where it has nothing
    better than the engine's queueing estimate.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        fits: Mapping[str, tuple[float, float]] | None = None,
        replications: int = 8,
        budget: float = 0.05,
        min_interval_s: float = 1.0,
        seed: int = 1,
        spread: float = SPREAD,
    ) -> None:
        self.engine = engine
        self.fits = dict(fits or {})
        self.replications = replications
        self.budget = budget
        self.min_interval_s = min_interval_s
        self.seed = seed
        self.spread = spread
        self.snapshot: Snapshot | None = None
        self.cost_s = 0.0  # wall seconds spent simulating, in total
        self.refreshes = 0
        self._last_wall = -math.inf
        self._last_cost = 0.0
        self._halls: dict[Any, FastHall] = {}
        # a hall of several sites is played as its lanes: each service at each site a
        # service of its own, served by that site's windows only (Engine.lanes)
        self._by_site = len(engine.sites) > 1
        self._cfg = lanes_config(sim_config(engine.cfg), len(engine.sites))
        self._round = 0
        self._recent = RecentArrivals(lambda t: self._lane(t.service, t.site))

    def _lane(self, service: str, site: int) -> str:
        """The simulated service a ticket of ``service`` at ``site`` is (lanes_config)."""
        return lane_code(self.engine.service_idx[service], site) if self._by_site else service

    def _lanes(self, service: str) -> list[str]:
        return [self._lane(service, k) for k in range(len(self.engine.sites))]

    # --- when ------------------------------------------------------------------------------

    def due(self, wall: float | None = None) -> bool:
        """Whether a refresh now keeps the simulating under ``budget`` of a core: the
        next may start once the last one's cost / budget has passed."""
        wall = time.monotonic() if wall is None else wall
        gap = max(self.min_interval_s, self._last_cost / self.budget)
        return wall - self._last_wall >= gap

    def keep_up(self, now: float) -> None:
        """Take in the tickets added since the last call (the coordinator's tick, every
        second): a capture takes in every ticket since the last capture, and in a burst
        captures are ~10 s apart (the budget), 13 ms of the loop at ~2,000 tickets a
        second; taken in each second, ~1 ms."""
        self._recent.counts(self.engine.tickets, now)

    # --- the state --------------------------------------------------------------------------

    def _counter(self, code: str) -> tuple[float, float]:
        """(mu, sigma) of the lognormal counter seconds of ``code``: learned from the
        hall's history where given, else around today's recent counter times."""
        fit = self.fits.get(code)
        if fit is not None:
            return fit
        sigma = SERVICE_SIGMA
        mean = self.engine.avg_service_s(code)
        return math.log(max(1.0, mean)) - sigma * sigma / 2, sigma

    def capture(self, now: float) -> dict[str, Any]:
        """What the simulation needs of the hall now; plain data, cheap (the waiting, the
        open tickets and the tickets added since the last capture, not the whole day), so
        it runs where the engine lives and the simulating elsewhere."""
        started = time.thread_time()
        e = self.engine
        day = e.day or e.business_day(now)
        base = epoch_of(self._cfg, day)
        waiting = e.waiting_in_queues()
        called, no_shows = e.called_and_no_shows()
        recent = self._recent.counts(e.tickets, now)
        lookback = min(RATE_LOOKBACK_S, max(300.0, now - self._opened(base)))
        skills: dict[int, dict[str, float]] = {}
        paused: dict[int, dict[str, float]] = {}
        busy: dict[int, tuple[str, float]] = {}
        queued = {t.service for t in waiting}
        for w in e.windows.values():
            site = e.window_site[w.number]
            if w.status is WindowStatus.PAUSED and w.skills:
                paused[w.number] = {self._lane(c, site): x for c, x in w.skills.items()}
            if w.status is not WindowStatus.OPEN or not w.skills:
                continue
            if (
                w.current is None
                and w.since is not None
                and now - w.since > UNSTAFFED_S
                and queued.intersection(w.skills)
            ):
                continue
            skills[w.number] = {self._lane(c, site): x for c, x in w.skills.items()}
            cur = w.current
            if cur is not None and cur.state in (TicketState.CALLED, TicketState.SERVING):
                at_counter = now - (cur.started_at or cur.called_at or now)
                busy[w.number] = (self._lane(cur.service, site), at_counter)
        state = {
            "now": now,
            "day": day,
            "base": base,
            "backlog": [
                (
                    t.number,
                    self._lane(t.service, t.site),
                    t.issued_at - base,
                    t.appt_start - base if t.appt_end else 0.0,
                    t.appt_end - base if t.appt_end else 0.0,
                )
                for t in waiting
            ],
            "rates": {k: recent.get(k, 0) / lookback for c in e.services for k in self._lanes(c)},
            "no_show": no_shows / called if called >= 20 else 0.0,
            "skills": skills,
            "paused": paused,
            "busy": busy,
            "counter": {k: self._counter(c) for c in e.services for k in self._lanes(c)},
        }
        state["capture_s"] = time.thread_time() - started
        return state

    def _opened(self, base: float) -> float:
        return base + open_spans(self._cfg.hall.open_hours)[0][0]

    # --- the simulation ------------------------------------------------------------------------

    def _hall(self, state: Mapping[str, Any]) -> FastHall:
        skills = state["skills"]
        key = (
            state["day"],
            tuple(sorted((w, tuple(sorted(sk.items()))) for w, sk in skills.items())),
        )
        hall = self._halls.get(key)
        if hall is None:
            if len(self._halls) > 8:
                self._halls.clear()
            hall = FastHall(
                self._cfg,
                type(self.engine.core),
                skills,
                day=state["day"],
                spans=open_spans(self._cfg.hall.open_hours),
            )
            self._halls[key] = hall
        return hall

    def simulate(
        self,
        state: Mapping[str, Any],
        run: Callable[[Callable[[], Snapshot]], Snapshot] | None = None,
    ) -> Snapshot:
        """Play the captured hall forward ``replications`` times; safe in a worker thread
        (it reads only ``state`` and its own simulated halls). ``run`` calls the playing
        elsewhere (the coordinator: in a forked child, ``snapshot.call_forked``): its cost
        grows with the hall's arrival rate (an hour of arrivals is drawn per replication,
        at most FUTURE_ARRIVALS_MAX a service: ~0.5 s of pure Python in a burst), and a
        worker thread would hold the GIL the event loop needs for that long."""
        hall = self._hall(state)  # built and cached here: a child's copy would be lost
        resumed = None
        if state.get("paused"):  # ...as is the hall with its paused windows back
            resumed = self._hall({**state, "skills": {**state["skills"], **state["paused"]}})
        self._round += 1
        play = functools.partial(self._play, state, hall, self._round, resumed)
        return play() if run is None else run(play)

    def _play(
        self,
        state: Mapping[str, Any],
        hall: FastHall,
        round_: int,
        resumed: FastHall | None = None,
    ) -> Snapshot:
        """Each ticket's call as the hall plays on with the windows open now. With windows
        paused, nobody knows when their staff come back: the earliest of a range is then
        that of the same hall with them back at once (``resumed``), so a taxpayer told
        "38-45 min" during a break is not called after 15."""
        started = time.thread_time()  # CPU of this thread: the budget is a core's share
        snap = self._calls(state, hall, round_)
        if resumed is not None:
            soon = self._calls(state, resumed, round_)
            now = state["now"]  # (one the resumed hall did not call: called as soon as now)
            snap.tickets = {
                n: _Pred(
                    p.p50, min(p.low, soon.tickets[n].low if n in soon.tickets else now), p.high
                )
                for n, p in snap.tickets.items()
            }
            snap.queue = {  # (these are from now on)
                c: (q[0], min(q[1], soon.queue[c][1] if c in soon.queue else 0.0), q[2])
                for c, q in snap.queue.items()
            }
            snap.paused = frozenset(c for sk in state["paused"].values() for c in sk)  # (lanes)
        snap.cost_s = time.thread_time() - started + state.get("capture_s", 0.0)
        return snap

    def _calls(self, state: Mapping[str, Any], hall: FastHall, round_: int) -> Snapshot:
        now, base = state["now"], state["base"]
        start_s = now - base
        counter = state["counter"]
        backlog = state["backlog"]
        n_back = len(backlog)
        probes = list(counter)
        calls: list[list[float]] = [[] for _ in range(n_back + len(probes))]
        for r in range(self.replications):
            rng = random.Random(f"hallq-eta:{self.seed}:{round_}:{r}")
            arrivals = self._draw(state, rng, probes)
            cols = DayArrivals.of(arrivals, hall.codes)
            busy = {
                w: start_s + _remaining(rng, counter[c][0], counter[c][1], elapsed)
                for w, (c, elapsed) in state["busy"].items()
            }
            hall.play(cols, start_s=start_s, backlog=len(calls), busy_until_s=busy)
            first = hall.first_calls(len(calls))
            for k, called in enumerate(first):
                if called >= 0:
                    calls[k].append(called)
        queue: dict[str, tuple[float, float, float]] = {}
        for c, times in zip(probes, calls[n_back:], strict=True):
            if len(times) >= max(1, self.replications // 2):
                p50, low, high = _quantiles(times)
                queue[c] = (p50 - now, low - now, high - now)
        tickets: dict[str, _Pred] = {}
        for (number, *_), times in zip(backlog, calls, strict=False):
            if len(times) >= max(1, self.replications // 2):
                tickets[number] = _Pred(*_quantiles(times))
        return Snapshot(at=now, tickets=tickets, queue=queue)

    def _draw(
        self, state: Mapping[str, Any], rng: random.Random, probes: list[str]
    ) -> list[Arrival]:
        """The waiting tickets, then one probe per service issued now (a ticket a window
        takes no time over, so it delays nobody: its call is the wait of a ticket issued
        now), then the arrivals expected over the horizon."""
        counter, no_show = state["counter"], state["no_show"]
        out = [
            Arrival(
                t,
                c,
                rng.lognormvariate(*counter[c]),
                rng.random() < no_show,
                slot=(a, b) if b else None,
            )
            for _, c, t, a, b in state["backlog"]
        ]
        start_s = state["now"] - state["base"]
        out.extend(Arrival(start_s, c, 0.0, False) for c in probes)
        future: list[Arrival] = []
        for c, rate in state["rates"].items():
            if rate <= 0:
                continue
            end = start_s + min(HORIZON_S, FUTURE_ARRIVALS_MAX / rate)
            t = start_s + rng.expovariate(rate)
            while t < end:
                future.append(
                    Arrival(t, c, rng.lognormvariate(*counter[c]), rng.random() < no_show)
                )
                t += rng.expovariate(rate)
        future.sort(key=lambda a: a.t)
        return out + future

    def install(self, snapshot: Snapshot, wall: float | None = None) -> None:
        self.snapshot = snapshot
        self.refreshes += 1
        self.cost_s += snapshot.cost_s
        self._last_cost = snapshot.cost_s
        self._last_wall = time.monotonic() if wall is None else wall

    def refresh(self, now: float, wall: float | None = None) -> Snapshot:
        """Capture, simulate and install in one go (tests, the benchmark)."""
        snap = self.simulate(self.capture(now))
        self.install(snap, wall)
        return snap

    # --- answers ---------------------------------------------------------------------------

    def estimate(
        self, engine: Engine, t: Ticket | None, service: str, now: float, site: int | None = None
    ) -> m.WaitRange | None:
        """The wait of ``t`` from now (or of a ticket of ``service`` issued now, at ``site``
        or any), minutes; ``None`` where the last refresh says nothing about it."""
        snap = self.snapshot
        if snap is None or now - snap.at > 2 * HORIZON_S:
            return None
        floor = engine.stalled_min(service, now) if t is None else 0.0
        if t is not None:
            site = t.site
        lanes = [self._lane(service, site)] if site is not None else self._lanes(service)
        soon = not snap.paused.isdisjoint(lanes)  # a break that may end now stalls it
        pred = snap.tickets.get(t.number) if t is not None else None
        if pred is not None:
            if pred.p50 < now:  # its predicted call has passed: nothing better known
                return None
            return self._range(pred.p50 - now, pred.low - now, pred.high - now, floor, soon)
        qs = [q for q in (snap.queue.get(k) for k in lanes) if q is not None]
        if not qs:
            return None
        # a ticket issued now, at any site: from the quickest site's start to the slowest's end
        return self._range(qs[0][0], min(q[1] for q in qs), max(q[2] for q in qs), floor, soon)

    def _range(
        self,
        p50_s: float,
        low_s: float,
        high_s: float,
        floor_min: float,
        soon: bool = False,
        spread: float | None = None,
    ) -> m.WaitRange:
        widen = self.spread if spread is None else spread
        p50 = max(0.0, p50_s) / 60.0
        low = max(0.0, low_s / 60.0 - widen)
        high = max(p50, high_s / 60.0 + widen)
        floor = min(floor_min, 999.0)
        return m.WaitRange(
            p50_min=round(min(999.0, max(p50, floor)), 1),
            low_min=round(min(999.0, low if soon else max(low, floor)), 1),
            high_min=round(min(999.0, max(high, floor)), 1),
            basis="simulation",
        )


def fits_of(demand: Demand, codes: Iterable[str] | None = None) -> dict[str, tuple[float, float]]:
    """Counter-time lognormals ``(mu, sigma)`` of a demand model (the learned one:
    ``coordinator.simulation.learn``), for ``codes`` (default: all of its services)."""
    out = {}
    for c in codes if codes is not None else demand.mean_min:
        if c in demand.mean_min:
            sigma = demand.sigma_of(c)
            out[c] = (math.log(demand.mean_min[c] * 60.0) - sigma * sigma / 2, sigma)
    return out


def _remaining(rng: random.Random, mu: float, sigma: float, elapsed: float) -> float:
    """Counter seconds still to go for a ticket served for ``elapsed`` already: drawn from
    the service's lognormal given that it lasts longer than that."""
    if elapsed <= 0:
        return rng.lognormvariate(mu, sigma)
    lo = _NORMAL.cdf((math.log(elapsed) - mu) / sigma)
    u = min(1.0 - 1e-9, lo + (1.0 - lo) * rng.random())
    return max(NO_SHOW_WAIT_S / 10, math.exp(mu + sigma * _NORMAL.inv_cdf(u)) - elapsed)


def _quantiles(xs: list[float]) -> tuple[float, float, float]:
    """(P50, P10, P90) of the distribution ``xs`` were drawn from. The k-th smallest of
    n draws sits on average at quantile k / (n + 1), so P10 is read at position
    0.1 (n + 1), not 0.1 (n - 1) + 1: interpolating within the sample would make eight
    replications' 80% range hold the call only about 6 times in 10. With eight draws the
    range is their smallest to their largest (expected to hold 7 in 9)."""
    s = sorted(xs)
    n = len(s)

    def q(p: float) -> float:
        pos = min(n - 1.0, max(0.0, p * (n + 1) - 1))
        i = int(pos)
        j = min(n - 1, i + 1)
        return s[i] + (s[j] - s[i]) * (pos - i)

    return q(0.5), q(LOW_Q), q(HIGH_Q)


__all__ = ["Snapshot", "WaitEstimator", "fits_of"]
