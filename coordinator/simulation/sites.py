"""A hall of several 办税点 (sites), simulated as the engine runs it: a queue per service
and site (the dispatch core's lanes), each window calling from its own building's.

Played as one queue per service, the example hall's idle main-building windows served
the branch's taxpayers, and ``hallq simulate`` said 2.4 minutes where the branch alone
waited 12.7 (same days, same skills). Each service's arrivals are shared among the sites
by the dispenser keys issuing it there (where taxpayers take their tickets, as the demo's
taxpayers press any key that issues their service), or by the windows serving it where
no dispenser names it; the share is dealt out in turn, exactly, with no draw of its own,
so every policy plays the same taxpayers at the same sites.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hallq.config import HallConfig, device_services

if TYPE_CHECKING:
    import datetime as dt

    from coordinator.simulation.day import DayResult
    from coordinator.simulation.profile import Arrival, DayArrivals, Demand

__all__ = ["SiteSplit", "SitesHall", "lane_code", "lanes_config"]

Skills = dict[int, dict[str, float]]


def lane_code(service_idx: int, site: int) -> str:
    """A lane's code as a service of the simulated hall (a wire-valid id: the simulator
    gives windows their skills as the desk would)."""
    return f"s{service_idx}-{site}"


def lanes_config(cfg: Any, sites: int) -> Any:
    """``cfg`` with each service once per site (``lane_code``), for playing a hall of
    several sites as its lanes; ``cfg`` itself where there is one."""
    if sites == 1:
        return cfg
    services = [
        s.model_copy(update={"code": lane_code(i, k)})
        for i, s in enumerate(cfg.services)
        for k in range(sites)
    ]
    return cfg.model_copy(update={"services": services})


class SiteSplit:
    """How one hall's sites are played: its lanes' hall, skills and arrivals, and the
    results folded back into its services."""

    def __init__(self, cfg: HallConfig) -> None:
        self.sites = cfg.sites
        self.codes = [s.code for s in cfg.services]
        self.idx = {c: i for i, c in enumerate(self.codes)}
        n = len(self.sites)
        self.window_site = {w.number: self.sites.index(cfg.zone(w.zone).site) for w in cfg.windows}
        keys = {c: [0.0] * n for c in self.codes}
        for agent in cfg.agents:
            if agent.role == "dispenser" and agent.site in self.sites:
                k = self.sites.index(agent.site)
                for dev in agent.devices:
                    for c in device_services(dev) or []:
                        if c in keys:
                            keys[c][k] += 1
        windows = {c: [0.0] * n for c in self.codes}
        for w in cfg.windows:
            for c in w.weights():
                if c in windows:
                    windows[c][self.window_site[w.number]] += 1
        self.share = {
            c: _normal(keys[c]) or _normal(windows[c]) or [1.0 / n] * n for c in self.codes
        }
        self.lane_codes = [lane_code(i, k) for i in range(len(self.codes)) for k in range(n)]
        self._service_of = {lane: self.codes[j // n] for j, lane in enumerate(self.lane_codes)}

    @classmethod
    def of(cls, cfg: HallConfig) -> SiteSplit | None:
        """The split of a hall of several sites; None for one site (nothing to split)."""
        return cls(cfg) if len(cfg.sites) > 1 else None

    def config(self, cfg: HallConfig) -> HallConfig:
        result: HallConfig = lanes_config(cfg, len(self.sites))
        return result

    def skills(self, skills: Skills) -> Skills:
        """Each window's skills as its own site's lanes."""
        n = len(self.sites)
        return {
            w: {
                self.lane_codes[self.idx[c] * n + self.window_site[w]]: x
                for c, x in sk.items()
                if c in self.idx
            }
            for w, sk in skills.items()
        }

    def demand_at(self, demand: Demand, site: int) -> Demand:
        """``demand`` as one site sees it: each service's share of its arrivals."""
        mix = {
            c: x * self.share[c][site] if c in self.share else 0.0 for c, x in demand.mix.items()
        }
        return dataclasses.replace(demand, mix=mix)

    def arrivals(self, day: DayArrivals) -> DayArrivals:
        """The day's taxpayers at their sites: each service's dealt in turn by its share
        (the site furthest below its share takes the next); a transfer stays in the
        building."""
        from coordinator.simulation.profile import DayArrivals

        n = len(self.sites)
        known = [self.idx.get(c, -1) for c in day.codes]
        dealt = {c: [0] * n for c in self.codes}
        counts = dict.fromkeys(self.codes, 0)
        svc, xfer = array("i", day.svc), array("i", day.xfer)
        for j, s in enumerate(day.svc):
            i = known[s]
            if i < 0:
                raise ValueError(f"arrivals for {day.codes[s]!r}, not a service of this hall")
            code = self.codes[i]
            counts[code] += 1
            share, given = self.share[code], dealt[code]
            k = max(range(n), key=lambda k: (share[k] * counts[code] - given[k], -k))
            given[k] += 1
            svc[j] = i * n + k
            if day.xfer[j] >= 0:
                xfer[j] = known[day.xfer[j]] * n + k
        return DayArrivals(
            self.lane_codes,
            day.t,
            svc,
            day.service_s,
            day.no_show,
            xfer,
            day.xfer_s,
            day.slot_a,
            day.slot_b,
        )

    def fold(self, result: DayResult) -> DayResult:
        """A day played as lanes, told by service (the report's rows)."""
        n = len(self.sites)
        waits: dict[str, list[float]] = {c: [] for c in self.codes}
        sites: dict[str, list[float]] = {s: [] for s in self.sites}
        for lane, values in result.waits.items():
            waits[self._service_of.get(lane, lane)].extend(values)
            if lane in self._service_of:
                sites[self.sites[self.lane_codes.index(lane) % n]].extend(values)
        return dataclasses.replace(result, waits=waits, site_waits=sites)


class SitesHall:
    """``FastHall`` for any hall: played as its lanes where it has several sites, told by
    service. For the simulations that only play whole days (``hallq simulate``, the
    comfort forecast)."""

    def __init__(
        self,
        cfg: HallConfig,
        core_cls: type[Any],
        skills: Skills,
        *,
        day: dt.date,
        spans: list[tuple[float, float]],
    ) -> None:
        from coordinator.simulation.day import FastHall

        self.split = SiteSplit.of(cfg)
        if self.split is not None:
            cfg, skills = self.split.config(cfg), self.split.skills(skills)
        self.hall = FastHall(cfg, core_cls, skills, day=day, spans=spans)

    def play(self, arrivals: Sequence[Arrival]) -> DayResult:
        if self.split is None:
            return self.hall.play(arrivals)
        from coordinator.simulation.profile import DayArrivals

        lanes = self.split.arrivals(DayArrivals.of(arrivals))
        return self.split.fold(self.hall.play(lanes))


def _normal(weights: Sequence[float]) -> list[float] | None:
    total = sum(weights)
    return [w / total for w in weights] if total > 0 else None
