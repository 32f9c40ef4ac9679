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
from collections.abc import Mapping
from dataclasses import dataclass

# Share of the day's arrivals per half hour from 09:00 (morning peak ~10:00, early-afternoon
# peak ~14:30, lunch lull). Halls closed over lunch simply get no arrivals in those slots.
PROFILE_START = dt.time(9, 0)
HALF_HOURS = [4, 7, 10, 11, 9, 7, 4, 2, 2, 3, 6, 9, 10, 8, 6, 4]
MIX = {"tax-filing": 0.34, "invoice": 0.24, "registration": 0.08, "preferential": 0.06,
       "certificate": 0.08, "consulting": 0.10, "vat-green": 0.05, "social-insurance": 0.05}
SERVICE_MIN = {"tax-filing": 1.8, "invoice": 1.2, "registration": 2.4, "preferential": 2.0,
               "certificate": 1.0, "consulting": 1.5, "vat-green": 1.4, "social-insurance": 1.8}
SEED_MEAN_COUNTER_MIN = 1.63   # the seed hall's overall mean counter time
SEED_MEAN_WAIT_MIN = 5.04      # and its mean wait, the calibration target
SERVICE_SIGMA = 0.6            # lognormal shape: coefficient of variation ~0.66
# Average filing-period daily volume at which per-service FIFO with dedicated windows gives
# the seed's mean wait in the Liwan hall (``python bench/simulate.py --calibrate``).
CALIBRATED_VOLUME = 9000.0


def filing_factor(day_of_month: int) -> float:
    """征期: the first half of the month is busier, days 10-15 (the deadline) the busiest;
    ``--volume`` is an average filing-period day."""
    if day_of_month <= 9:
        return 1.0
    if day_of_month <= 15:
        return 1.4
    return 0.6


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

    @classmethod
    def for_services(cls, codes: list[str], *, mean_counter_min: float = SEED_MEAN_COUNTER_MIN,
                     sigma: float = SERVICE_SIGMA) -> Demand:
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
        the quietest slot's weight (a hall opening earlier or later than 09:00-17:00)."""
        start = PROFILE_START.hour * 60 + PROFILE_START.minute
        slot = int((minute_of_day - start) // 30)
        if 0 <= slot < len(self.half_hours):
            return self.half_hours[slot]
        return min(self.half_hours)


@dataclass(frozen=True)
class Arrival:
    """One taxpayer: when (seconds from midnight, hall time), for what, how long at the
    counter, and whether they will be gone when called."""

    t: float
    service: str
    service_s: float
    no_show: bool


def open_spans(hours: list[tuple[dt.time, dt.time]]) -> list[tuple[float, float]]:
    """Opening hours as (start, end) seconds from midnight."""
    return [(a.hour * 3600 + a.minute * 60.0, b.hour * 3600 + b.minute * 60.0) for a, b in hours]


def draw_day(demand: Demand, spans: list[tuple[float, float]], *, volume: float,
             rng: random.Random, no_show: float = 0.0) -> list[Arrival]:
    """One day's arrivals: a non-homogeneous Poisson process, piecewise constant by half
    hour, with expected total ``volume`` over the open spans.

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
    mus = {c: math.log(demand.mean_min[c] * 60) - demand.sigma ** 2 / 2 for c in codes}
    out: list[Arrival] = []
    if mass <= 0 or volume <= 0:
        return out
    for start, end, w in pieces:
        rate = volume * w / mass / (end - start)
        t = start + rng.expovariate(rate)
        while t < end:
            u = rng.random() * acc
            code = codes[-1]
            for c, edge in zip(codes, cum, strict=True):
                if u < edge:
                    code = c
                    break
            out.append(Arrival(t, code, rng.lognormvariate(mus[code], demand.sigma),
                               no_show > 0 and rng.random() < no_show))
            t += rng.expovariate(rate)
    return out
