"""Retained state for dashboards and boards: comfort index, city link, KPIs.

Imported by :mod:`hallq.messages` on first use of one of its names."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import (
    Field,
    RootModel,
    StringConstraints,
    model_validator,
)

from hallq.messages import (
    ComfortLevel,
    Retained,
    ServiceCode,
    ShortText,
    Wire,
)


class ComfortDay(Wire):
    """One day of the comfort index: its level, and by hour from ``first_hour`` the level
    (``null``: closed that hour, e.g. lunch) and forecast arrivals -- columns, so a month
    fits well inside one message."""

    day: dt.date
    open: bool
    level: ComfortLevel
    first_hour: int = Field(default=0, ge=0, le=23)
    hours: list[ComfortLevel | None] = Field(default_factory=list, max_length=24)
    expected: list[int] = Field(default_factory=list, max_length=24)

    @model_validator(mode="after")
    def _columns_agree(self) -> ComfortDay:
        if len(self.hours) != len(self.expected):
            raise ValueError(f"{len(self.hours)} hour levels but {len(self.expected)} counts")
        if self.first_hour + len(self.hours) > 24:
            raise ValueError("hours run past midnight")
        return self


class ComfortState(Retained):
    """办税舒适度指数: the forecast's next days by hour, for boards, the dashboard and the
    bureau's WeChat publisher. Levels are bands of expected wait (by default the mean
    wait of simulated days at the forecast's arrivals, ``method``); the two rates are the
    arrivals per hour at which the wait reaches each band edge, for reference."""

    source: ShortText
    quiet_below_per_hour: float = Field(ge=0)
    busy_from_per_hour: float = Field(ge=0)
    method: ShortText
    days: list[ComfortDay] = Field(default_factory=list, max_length=62)


class CityLinkState(RootModel[Annotated[int, Field(strict=True, ge=0, le=1)]]):
    """The city bridge (``hallq bridge``): 1 connected, 0 not; retained, its will sets 0. A
    bare number, not a message, as Mosquitto's bridge notifications wrote it before."""


class Kpi(Wire):
    issued: int = Field(
        ge=0, description="tickets somebody holds: a voided one (nobody held it) is not counted"
    )
    served: int = Field(ge=0)
    no_show: int = Field(default=0, ge=0)
    avg_wait_s: float | None = None
    p90_wait_s: float | None = None
    avg_service_s: float | None = None


class StatsState(Retained):
    day: dt.date
    total: Kpi
    per_service: dict[ServiceCode, Kpi] = Field(default_factory=dict)
    per_window: dict[Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,2}$")], Kpi] = Field(
        default_factory=dict
    )
