"""办税舒适度指数: forecast hall arrivals a month ahead and class them 较少 / 适中 / 较多.

Submodules: ``history`` (counts per day and half hour, from the event log or generated),
``hall_calendar`` (holidays, 调休 working weekends and filing deadlines from the hall
file), ``model`` (Poisson GLM by IRLS: month trend, filing phase, weekday, half hour),
``levels`` (the wait bands, and wait-derived rate thresholds from simulated hall days or
Erlang C), ``waits`` (each forecast day simulated: levels by the wait of the tickets issued
in each hour, the default), ``index`` (the :class:`Forecast` and ``build_forecast``),
``evaluate`` (held-out months against seasonal-naive), ``export`` (terminal table, CSV,
PNG). ``hallq forecast`` runs them all.

A command line wires it like this::

    fc = build_forecast(cfg, log_path=default_log_path(cfg))  # coordinator.service
    console.print(render_forecast(fc))
    export_csv(fc, "comfort.csv"); export_png(fc, "comfort.png")
    board_state.comfort = fc.today_level(time.time())
"""

from __future__ import annotations

from coordinator.forecast.evaluate import Evaluation, evaluate, seasonal_naive
from coordinator.forecast.export import export_csv, export_png, render_forecast
from coordinator.forecast.hall_calendar import Calendar
from coordinator.forecast.history import History, arrival_counts, generate_history
from coordinator.forecast.index import MIN_WEEKS, Forecast, HourRow, build_forecast, forecast_from
from coordinator.forecast.levels import (
    LEVEL_BY,
    LEVELS,
    Level,
    LevelBy,
    Thresholds,
    WaitCurve,
    expected_wait,
    simulated_wait_curve,
    thresholds,
    wait_level,
)
from coordinator.forecast.model import Fit, PoissonFitError, fit
from coordinator.forecast.waits import SimulatedWaits, draw_expected, simulate_waits

__all__ = [
    "LEVELS",
    "LEVEL_BY",
    "MIN_WEEKS",
    "Calendar",
    "Evaluation",
    "Fit",
    "Forecast",
    "History",
    "HourRow",
    "Level",
    "LevelBy",
    "PoissonFitError",
    "SimulatedWaits",
    "Thresholds",
    "WaitCurve",
    "arrival_counts",
    "build_forecast",
    "draw_expected",
    "evaluate",
    "expected_wait",
    "export_csv",
    "export_png",
    "fit",
    "forecast_from",
    "generate_history",
    "render_forecast",
    "seasonal_naive",
    "simulate_waits",
    "simulated_wait_curve",
    "thresholds",
    "wait_level",
]
