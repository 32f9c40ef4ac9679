"""Express-window advice (快速办理专窗): live switches and an offline day plan.

- ``advise(engine, now)``: for each service whose predicted wait crosses its target, which
  open windows to switch to it and for how long, with the effect predicted by a short
  simulation from the current state (``advice_alert`` turns one into the supervisors'
  ``AlertEvent``);
- ``plan_day(cfg, volume=...)``: a greedy search, on the simulator with common random
  numbers, for skill changes that lower the day's p95 wait under a staff limit;
- ``replay_day``: the simulated day both rest on -- ``run_day`` plus timed ``SetSkills``
  and a start from a live state.

``hallq advise HALL.toml`` prints the plan and the bar table (``bar.py``).
"""

from coordinator.advice.live import (
    ActOnAdvice,
    Advice,
    advice_alert,
    advise,
    predicted_wait_min,
    queue_wait_min,
    simulate_switch,
    worth_it,
)
from coordinator.advice.plan import Move, Plan, Staffing, limit_staff, plan_day
from coordinator.advice.replay import replay_day
from coordinator.simulation.day import SkillChange

__all__ = [
    "ActOnAdvice",
    "Advice",
    "Move",
    "Plan",
    "SkillChange",
    "Staffing",
    "advice_alert",
    "advise",
    "limit_staff",
    "plan_day",
    "predicted_wait_min",
    "queue_wait_min",
    "replay_day",
    "simulate_switch",
    "worth_it",
]
