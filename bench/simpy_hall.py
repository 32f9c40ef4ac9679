"""A SimPy model of the hall under per-service FIFO with dedicated windows (bench only).

The peer the hallq simulator is measured against: written the way a SimPy user would,
one process per taxpayer and one ``Resource`` per service whose capacity is the number
of windows dedicated to it. It takes the very arrivals and counter times hallq's
simulator plays (``coordinator.simulation.draw_days``) and applies the same two issuing
rules the engine applies -- a service's hours and its daily cap -- so under this policy
both must give the same waits, ticket for ticket.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

import simpy

from coordinator.simulation.profile import Arrival, open_spans
from hallq.config import HallConfig


@dataclass
class SimpyDay:
    waits: dict[str, list[float]]
    turned_away: int


def _hours(cfg: HallConfig) -> dict[str, list[tuple[float, float]]]:
    return {s.code: open_spans(s.hours or cfg.hall.open_hours) for s in cfg.services}


def run_simpy_day(
    cfg: HallConfig, windows_per_service: dict[str, int], arrivals: Iterable[Arrival]
) -> SimpyDay:
    """Play one day of ``arrivals`` with ``windows_per_service`` dedicated windows."""
    env = simpy.Environment()
    counters = {c: simpy.Resource(env, capacity=n) for c, n in windows_per_service.items()}
    hours = _hours(cfg)
    caps = {s.code: s.daily_cap for s in cfg.services}
    issued = dict.fromkeys(caps, 0)
    waits: dict[str, list[float]] = {c: [] for c in caps}
    turned = 0

    def taxpayer(a: Arrival) -> Generator[Any, Any, None]:
        with counters[a.service].request() as req:
            yield req
            waits[a.service].append(env.now - a.t)
            yield env.timeout(a.service_s)

    def door() -> Generator[Any, Any, None]:
        nonlocal turned
        for a in arrivals:
            if a.t > env.now:
                yield env.timeout(a.t - env.now)
            cap = caps[a.service]
            if not any(s <= a.t < e for s, e in hours[a.service]) or (
                cap is not None and issued[a.service] >= cap
            ):
                turned += 1
                continue
            issued[a.service] += 1
            env.process(taxpayer(a))

    env.process(door())
    env.run()
    return SimpyDay(waits=waits, turned_away=turned)


def windows_per_service(skills: dict[int, dict[str, float]]) -> dict[str, int]:
    """Capacities from a dedicated assignment (one service per window)."""
    out: dict[str, int] = {}
    for sk in skills.values():
        (code,) = sk
        out[code] = out.get(code, 0) + 1
    return out
