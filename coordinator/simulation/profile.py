"""Who comes to the hall and how long they stay: the demand side of a simulated day.

The demo's traffic generator and the simulator share these figures so a demo day and a
simulated day describe the same hall. They are the seed hall's (Liwan): a morning peak
around 10:00, an early-afternoon peak around 14:30, a lull at lunch, and an overall mean
counter time of 1.63 min. This module draws the random day; it never touches the engine,
so the stream is the same for every policy run on it (common random numbers).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from array import array
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

# Share of the day's arrivals per half hour from 09:00 (morning peak ~10:00, early-afternoon
# peak ~14:30, lunch lull). Halls closed over lunch simply get no arrivals in those slots.
PROFILE_START = dt.time(9, 0)
HALF_HOURS = [4, 7, 10, 11, 9, 7, 4, 2, 2, 3, 6, 9, 10, 8, 6, 4]
MIX = {
    "tax-filing": 0.34,
    "invoice": 0.24,
    "registration": 0.08,
    "preferential": 0.06,
    "certificate": 0.08,
    "consulting": 0.10,
    "vat-green": 0.05,
    "social-insurance": 0.05,
}
SERVICE_MIN = {
    "tax-filing": 1.8,
    "invoice": 1.2,
    "registration": 2.4,
    "preferential": 2.0,
    "certificate": 1.0,
    "consulting": 1.5,
    "vat-green": 1.4,
    "social-insurance": 1.8,
}
SEED_MEAN_COUNTER_MIN = 1.63  # the seed hall's overall mean counter time
SEED_MEAN_WAIT_MIN = 5.04  # and its mean wait, the calibration target
SERVICE_SIGMA = 0.6  # lognormal shape: coefficient of variation ~0.66
# Average filing-period daily volume at which per-service FIFO with dedicated windows gives
# the seed's mean wait in the Liwan hall (``coordinator.simulation.calibrate``; also
# ``python bench/simulate.py --calibrate``). 8,440 since its two buildings are played as
# their own queues (``simulation.sites``); 9,000 when they were one hall's.
CALIBRATED_VOLUME = 8440.0


# 征期: taxes due monthly are filed by the month's deadline, the 15th unless holidays or a
# weekend move it (征期延长, e.g. to the 26th in October 2026 after National Day).
FILING_DEADLINE = 15
PEAK_DAYS = 6  # the run-up: the deadline and the 5 days before it
EARLY, PEAK, AFTER = 0, 1, 2  # filing phases
FILING_PHASES = ("early", "peak", "after")
PHASE_FACTOR = (1.0, 1.4, 0.6)


def filing_phase(
    day_of_month: int, deadline: int = FILING_DEADLINE, closed: Container[int] = ()
) -> int:
    """The filing phase (``EARLY``, ``PEAK`` or ``AFTER``) of a day of a month whose filing
    deadline is ``deadline``: the peak is the last ``PEAK_DAYS`` calendar days up to and
    including the deadline, after is every day past it. Days of the month in ``closed``
    (the hall's holidays) are not counted in the peak's days, so a deadline right after a
    long holiday (the Spring Festival) reaches back over it to the days before it. The
    default deadline gives days 1-9 / 10-15 / 16-end."""
    if day_of_month > deadline:
        return AFTER
    counted = sum(1 for d in range(day_of_month, deadline + 1) if d not in closed)
    return PEAK if counted <= PEAK_DAYS else EARLY


def filing_factor(
    day_of_month: int, deadline: int = FILING_DEADLINE, closed: Container[int] = ()
) -> float:
    """征期: the run-up to the deadline is the busiest (x1.4), the days before it busy
    (x1.0), the rest of the month quiet (x0.6); ``--volume`` is an average filing-period
    day. By default days 1-9, 10-15 and 16-end (see :func:`filing_phase`)."""
    return PHASE_FACTOR[filing_phase(day_of_month, deadline, closed)]


# Mean of filing_factor over days 1-15, so that ``day_factor`` averages 1.0 over the period.
FILING_MEAN = sum(filing_factor(d) for d in range(1, 16)) / 15


def day_factor(day_of_month: int | None) -> float:
    """Volume multiplier for a day; ``None`` is the average filing-period day (1.0)."""
    return 1.0 if day_of_month is None else filing_factor(day_of_month) / FILING_MEAN


@dataclass(frozen=True)
class Demand:
    """A hall's demand model: mix, mean counter minutes per service, the half-hour profile.

    Services not in the seed mix share what is left evenly (or get an equal share when
    nothing matches), so any hall file can be simulated, not only the seed's.
    """

    mix: Mapping[str, float]
    mean_min: Mapping[str, float]
    sigma: float = SERVICE_SIGMA
    half_hours: tuple[float, ...] = tuple(HALF_HOURS)
    sigmas: Mapping[str, float] | None = None  # per-service lognormal shape, else ``sigma``
    profile_start: dt.time = PROFILE_START  # the time ``half_hours[0]`` begins

    def sigma_of(self, code: str) -> float:
        """Lognormal shape of one service's counter time (learned ones differ by service)."""
        return self.sigmas.get(code, self.sigma) if self.sigmas else self.sigma

    @classmethod
    def for_services(
        cls,
        codes: list[str],
        *,
        mean_counter_min: float = SEED_MEAN_COUNTER_MIN,
        sigma: float = SERVICE_SIGMA,
    ) -> Demand:
        known = {c: MIX[c] for c in codes if c in MIX}
        rest = [c for c in codes if c not in known]
        left = max(0.0, 1.0 - sum(known.values()))
        if rest:
            share = (left if left > 0 else 1.0 / len(codes)) / len(rest)
            known.update({c: share for c in rest})
        total = sum(known.values())
        mix = {c: known[c] / total for c in codes}
        raw = {c: SERVICE_MIN.get(c, mean_counter_min) for c in codes}
        scale = mean_counter_min / sum(mix[c] * raw[c] for c in codes)
        return cls(mix=mix, mean_min={c: raw[c] * scale for c in codes}, sigma=sigma)

    def weight_at(self, minute_of_day: float) -> float:
        """Profile weight of the half hour holding ``minute_of_day``; outside the profile
        the quietest slot's weight (a hall open longer than its profile covers)."""
        start = self.profile_start.hour * 60 + self.profile_start.minute
        slot = int((minute_of_day - start) // 30)
        if 0 <= slot < len(self.half_hours):
            return self.half_hours[slot]
        return min(self.half_hours)


@dataclass(frozen=True)
class Arrival:
    """One taxpayer: when (seconds from midnight, hall time), for what, how long at the
    counter, and whether they will be gone when called.

    ``transfer``: the service the first window sends them on to, and ``transfer_s`` the
    counter time there. ``slot``: a booked appointment (start, end in seconds from
    midnight) they check in with at the dispenser.
    """

    t: float
    service: str
    service_s: float
    no_show: bool
    transfer: str | None = None
    transfer_s: float = 0.0
    slot: tuple[float, float] | None = None


APPOINTMENT_SLOT_S = 1800.0  # booked slots are half hours
EARLY_S = 600.0  # booked taxpayers come up to 10 minutes before their slot


class DayArrivals(Sequence[Arrival]):
    """One day's arrivals stored by column, so the compiled day loop reads them as C arrays.

    It is still a sequence of :class:`Arrival` for everything else (the engine-driven loops,
    the advice, tests); items are built on access. ``svc`` and ``xfer`` index ``codes``
    (``xfer`` -1: no transfer); ``slot_a``/``slot_b`` are 0 without a booking.
    """

    __slots__ = ("codes", "no_show", "service_s", "slot_a", "slot_b", "svc", "t", "xfer", "xfer_s")

    def __init__(
        self,
        codes: Sequence[str],
        t: array[float],
        svc: array[int],
        service_s: array[float],
        no_show: array[int],
        xfer: array[int] | None = None,
        xfer_s: array[float] | None = None,
        slot_a: array[float] | None = None,
        slot_b: array[float] | None = None,
    ) -> None:
        n = len(t)
        self.xfer = array("i", [-1]) * n if xfer is None else xfer
        self.xfer_s = array("d", [0.0]) * n if xfer_s is None else xfer_s
        self.slot_a = array("d", [0.0]) * n if slot_a is None else slot_a
        self.slot_b = array("d", [0.0]) * n if slot_b is None else slot_b
        if not all(
            len(c) == n
            for c in (svc, service_s, no_show, self.xfer, self.xfer_s, self.slot_a, self.slot_b)
        ):
            raise ValueError("arrival columns differ in length")
        self.codes = tuple(codes)
        self.t, self.svc, self.service_s, self.no_show = t, svc, service_s, no_show

    @classmethod
    def of(cls, arrivals: Iterable[Arrival], codes: Sequence[str] = ()) -> DayArrivals:
        """Columns of any arrivals; services not in ``codes`` are added after them."""
        if isinstance(arrivals, DayArrivals) and (not codes or arrivals.codes == tuple(codes)):
            return arrivals
        index = {c: i for i, c in enumerate(codes)}
        t, svc, service_s, no_show = array("d"), array("i"), array("d"), array("b")
        xfer, xfer_s, slot_a, slot_b = array("i"), array("d"), array("d"), array("d")
        for a in arrivals:
            t.append(a.t)
            svc.append(index.setdefault(a.service, len(index)))
            service_s.append(a.service_s)
            no_show.append(a.no_show)
            xfer.append(-1 if a.transfer is None else index.setdefault(a.transfer, len(index)))
            xfer_s.append(a.transfer_s)
            slot_a.append(a.slot[0] if a.slot else 0.0)
            slot_b.append(a.slot[1] if a.slot else 0.0)
        return cls(list(index), t, svc, service_s, no_show, xfer, xfer_s, slot_a, slot_b)

    def __len__(self) -> int:
        return len(self.t)

    @overload
    def __getitem__(self, i: int) -> Arrival: ...
    @overload
    def __getitem__(self, i: slice) -> list[Arrival]: ...
    def __getitem__(self, i: int | slice) -> Arrival | list[Arrival]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        x = self.xfer[i]
        return Arrival(
            self.t[i],
            self.codes[self.svc[i]],
            self.service_s[i],
            bool(self.no_show[i]),
            None if x < 0 else self.codes[x],
            self.xfer_s[i],
            (self.slot_a[i], self.slot_b[i]) if self.slot_b[i] else None,
        )

    def __iter__(self) -> Iterator[Arrival]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DayArrivals):
            return list(self) == list(other)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable columns

    def __repr__(self) -> str:
        return f"DayArrivals({len(self)} arrivals, services {list(self.codes)})"


def open_spans(hours: list[tuple[dt.time, dt.time]]) -> list[tuple[float, float]]:
    """Opening hours as (start, end) seconds from midnight."""
    return [(a.hour * 3600 + a.minute * 60.0, b.hour * 3600 + b.minute * 60.0) for a, b in hours]


def draw_day(
    demand: Demand,
    spans: list[tuple[float, float]],
    *,
    volume: float,
    rng: random.Random,
    no_show: float = 0.0,
    transfer: float = 0.0,
    appointments: float = 0.0,
) -> DayArrivals:
    """One day's arrivals: a non-homogeneous Poisson process, piecewise constant by half
    hour, with expected total ``volume`` over the open spans.

    ``transfer`` is the share of taxpayers the first window sends on to another service
    (chosen by the mix); ``appointments`` the share who booked the half-hour slot in which
    they would have come, and come up to ``EARLY_S`` before it starts instead (not before
    the hall opens). Both draw nothing when 0, so days without them are the very days
    drawn before they existed.

    Exponential gaps within each constant-rate piece are exact for that piece. Every random
    number the day needs (service, counter time, no-show) is drawn here, once, so policies
    compared on this list see the very same taxpayers.
    """
    pieces: list[tuple[float, float, float]] = []
    for start, end in spans:
        t = start
        while t < end:
            nxt = min(end, (t // 1800 + 1) * 1800)
            pieces.append((t, nxt, demand.weight_at(t / 60) * (nxt - t)))
            t = nxt
    mass = sum(p[2] for p in pieces)
    codes = list(demand.mix)
    cum: list[float] = []
    acc = 0.0
    for c in codes:
        acc += demand.mix[c]
        cum.append(acc)
    sigmas = [demand.sigma_of(c) for c in codes]
    mus = [
        math.log(demand.mean_min[c] * 60) - sig**2 / 2 for c, sig in zip(codes, sigmas, strict=True)
    ]
    ts, svc, service_s, gone = array("d"), array("i"), array("d"), array("b")
    xfer, xfer_s, slot_a, slot_b = array("i"), array("d"), array("d"), array("d")
    out = DayArrivals(codes, ts, svc, service_s, gone, xfer, xfer_s, slot_a, slot_b)
    if mass <= 0 or volume <= 0:
        return out
    last = len(codes) - 1

    def span_of(t: float) -> float:
        return next(a for a, b in spans if a <= t < b)

    def pick() -> int:
        u = rng.random() * acc
        for j, edge in enumerate(cum):
            if u < edge:
                return j
        return last

    for start, end, w in pieces:
        if w <= 0:
            continue  # a half hour nobody comes in (a learned profile may hold one)
        rate = volume * w / mass / (end - start)
        t = start + rng.expovariate(rate)
        while t < end:
            k = pick()
            ts.append(t)
            svc.append(k)
            service_s.append(rng.lognormvariate(mus[k], sigmas[k]))
            gone.append(no_show > 0 and rng.random() < no_show)
            x, d = -1, 0.0
            if transfer > 0 and len(codes) > 1 and rng.random() < transfer:
                while (x := pick()) == k:
                    pass
                d = rng.lognormvariate(mus[x], sigmas[x])
            xfer.append(x)
            xfer_s.append(d)
            a = b = 0.0
            if appointments > 0 and rng.random() < appointments:
                # booked for the half hour they would have come in; they come before it
                a = max(span_of(t), t // APPOINTMENT_SLOT_S * APPOINTMENT_SLOT_S)
                b = a + APPOINTMENT_SLOT_S
                ts[-1] = max(span_of(t), a - rng.uniform(0.0, EARLY_S))
            slot_a.append(a)
            slot_b.append(b)
            t += rng.expovariate(rate)
    if appointments > 0:
        order = sorted(range(len(ts)), key=ts.__getitem__)
        for floats in (ts, service_s, xfer_s, slot_a, slot_b):
            floats[:] = array("d", [floats[k] for k in order])
        for ints in (svc, gone, xfer):
            ints[:] = array(ints.typecode, [ints[k] for k in order])
    return out
