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

from typing import TYPE_CHECKING

from hallq.lazy import lazy_names

if TYPE_CHECKING:
    from coordinator.forecast.evaluate import Evaluation, evaluate, seasonal_naive
    from coordinator.forecast.export import export_csv, export_png, render_forecast
    from coordinator.forecast.hall_calendar import Calendar
    from coordinator.forecast.history import History, arrival_counts, generate_history
    from coordinator.forecast.index import (
        MIN_WEEKS,
        Forecast,
        HourRow,
        build_forecast,
        forecast_from,
    )
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

_HOME = {
    "Evaluation": ".evaluate",
    "evaluate": ".evaluate",
    "seasonal_naive": ".evaluate",
    "export_csv": ".export",
    "export_png": ".export",
    "render_forecast": ".export",
    "Calendar": ".hall_calendar",
    "History": ".history",
    "arrival_counts": ".history",
    "generate_history": ".history",
    "MIN_WEEKS": ".index",
    "Forecast": ".index",
    "HourRow": ".index",
    "build_forecast": ".index",
    "forecast_from": ".index",
    "LEVEL_BY": ".levels",
    "LEVELS": ".levels",
    "Level": ".levels",
    "LevelBy": ".levels",
    "Thresholds": ".levels",
    "WaitCurve": ".levels",
    "expected_wait": ".levels",
    "simulated_wait_curve": ".levels",
    "thresholds": ".levels",
    "wait_level": ".levels",
    "Fit": ".model",
    "PoissonFitError": ".model",
    "fit": ".model",
    "SimulatedWaits": ".waits",
    "draw_expected": ".waits",
    "simulate_waits": ".waits",
}


# Each name from its submodule on first use: importing one submodule (the appointment book
# needs ``hall_calendar``) must not load numpy, the model and the PNG export, which the
# coordinator's start does not wait for.
__getattr__ = lazy_names(__name__, _HOME)

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
