"""The staffing policies a simulated day compares, as window skills the engine is given.

All three run through the same dispatch core; they differ only in what each window
serves, which is exactly what a supervisor can change live (``SetSkills``):

- ``fifo``: per-service FIFO with dedicated windows -- the hall before hallq. Each window
  serves one service, chosen among the services its configured skills allow, so the
  count per service follows the service's share of the workload;
- ``hallq``: the hall's skills as configured, scored by the dispatch core;
- ``pool``: every window serves every service at weight 1 -- a bound no real hall reaches,
  since not every clerk can do everything.
"""

from __future__ import annotations

from coordinator.simulation.profile import Demand
from hallq.config import HallConfig

POLICIES = ("fifo", "hallq", "pool")
POLICY_NAMES = {
    "fifo": "per-service FIFO, dedicated windows",
    "hallq": "hallq dispatch, hall skills",
    "pool": "full pool (bound)",
}

Skills = dict[int, dict[str, float]]


def configured_skills(cfg: HallConfig) -> Skills:
    return {w.number: dict(w.weights()) for w in cfg.windows}


def pool_skills(cfg: HallConfig) -> Skills:
    every = {s.code: 1.0 for s in cfg.services}
    return {w.number: dict(every) for w in cfg.windows}


def dedicated_skills(cfg: HallConfig, demand: Demand) -> Skills:
    """One service per window, proportional to workload (mix x mean counter time).

    Windows with the fewest skills choose first (they have the least choice), each taking
    the service it may serve that is furthest below its target. A service left with no
    window then takes one from the service holding the most, among windows allowed to
    serve it, so no queue is stranded.
    """
    load = {c: demand.mix.get(c, 0.0) * demand.mean_min.get(c, 0.0) for c in demand.mix}
    total = sum(load.values()) or 1.0
    n = len(cfg.windows)
    target = {c: load[c] / total * n for c in load}
    allowed = {w.number: [c for c in w.weights() if c in target] for w in cfg.windows}
    assigned: dict[str, list[int]] = {c: [] for c in target}
    choice: dict[int, str] = {}
    for number in sorted(allowed, key=lambda k: (len(allowed[k]), k)):
        options = allowed[number] or list(target)
        best = max(options, key=lambda c: (target[c] - len(assigned[c]), target[c], c))
        choice[number] = best
        assigned[best].append(number)
    for c in sorted(target, key=lambda c: -target[c]):
        if assigned[c] or target[c] <= 0:
            continue
        donors = [k for k in allowed if c in allowed[k] and len(assigned[choice[k]]) > 1]
        if donors:
            k = max(donors, key=lambda k: (len(assigned[choice[k]]) - target[choice[k]], -k))
            assigned[choice[k]].remove(k)
            choice[k] = c
            assigned[c].append(k)
    return {k: {choice[k]: 1.0} for k in sorted(choice)}


def policy_skills(cfg: HallConfig, demand: Demand, policy: str) -> Skills:
    if policy == "fifo":
        if len(cfg.sites) > 1:  # each building's windows dedicated to its own workload
            from coordinator.simulation.sites import SiteSplit

            split = SiteSplit(cfg)
            out: Skills = {}
            for k, site in enumerate(split.sites):
                zones = {z.id for z in cfg.zones if z.site == site}
                here = cfg.model_copy(
                    update={"windows": [w for w in cfg.windows if w.zone in zones]}
                )
                out.update(dedicated_skills(here, split.demand_at(demand, k)))
            return dict(sorted(out.items()))
        return dedicated_skills(cfg, demand)
    if policy == "hallq":
        return configured_skills(cfg)
    if policy == "pool":
        return pool_skills(cfg)
    raise ValueError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
