"""``hallq demo``: a whole hall on one machine, everything real except the hardware.

The coordinator, one agent per configured Pi (simulated devices behind pseudo-terminals
speaking the real bytes), and a traffic generator: taxpayers arrive by an hourly profile
and press dispenser keys; staff at every window press CALL, serve, skip no-shows,
transfer and let taxpayers rate. Hall time runs ``speed`` times faster than the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from coordinator.simulation.profile import (
    CALIBRATED_VOLUME,
    SEED_MEAN_COUNTER_MIN,
    Demand,
    day_factor,
    draw_day,
    open_spans,
)
from hallq.config import BrokerConfig, CallPadDevice, HallConfig, RatingPadDevice
from hallq.examples import example_hall

log = logging.getLogger("hallqctl.demo")

DEMO_PASSWORD = "hallq-demo"  # only when the hall file sets none; printed with the URL
DEFAULT_CONFIG = example_hall()
# what a pad shows when its window has a ticket to serve: the number, and while the window
# is paused, the number with edge.window.PAUSE_AFTER (or CLOSE_AFTER)
TICKET = re.compile(r"^[A-Z][0-9]{2,5}( 办完后(暂停|关窗))?$")
RATINGS = [(4, 0.70), (3, 0.20), (2, 0.07), (1, 0.03)]
WORKDAYS = (0, 1, 2, 3, 4)  # Monday to Friday: what the seed hall's history opens


class HallClock:
    """Hall time, ``speed`` times faster than the wall clock, starting at ``start``."""

    def __init__(self, start: float, speed: float, *, running: bool = True) -> None:
        self.start = start
        self.speed = speed
        self._wall0: float | None = time.monotonic() if running else None

    def run(self) -> None:
        """Let hall time pass from now on; until then it stands at ``start`` (the demo holds
        it while its parts start, which can take half a minute on a slow machine)."""
        if self._wall0 is None:
            self._wall0 = time.monotonic()

    def __call__(self) -> float:
        if self._wall0 is None:
            return self.start
        return self.start + (time.monotonic() - self._wall0) * self.speed

    async def sleep(self, hall_seconds: float) -> None:
        await asyncio.sleep(max(0.0, hall_seconds) / self.speed)


@dataclass
class DemoStats:
    arrivals: int = 0
    presses: int = 0
    calls: list[float] = field(default_factory=list)


class DemoError(Exception):
    """The demo cannot go on; the message is the root cause, printed as the first error."""

    reported = False  # already printed on stderr


def _say(text: str) -> None:
    """A line for the person at the terminal, beside the log (stderr, never buffered)."""
    print(f"hallq demo: {text}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def demo_broker(workdir: Path, url: str | None = None) -> AsyncIterator[BrokerConfig]:
    """A broker of the demo's own: ``url`` when given (joined on purpose); else a private
    Mosquitto on a free loopback port if the binary exists; else an embedded MQTT 3.1.1
    broker (amqtt), so pip install suffices. The hall file's broker is never used: a demo
    must not publish a fake hall into a broker it did not start."""
    from hallqctl.mosquitto import Mosquitto, find_mosquitto, free_port

    if url is not None:
        joined = BrokerConfig(url=url)
        try:
            with socket.create_connection((joined.host, joined.port), timeout=3):
                pass
        except OSError as exc:
            raise DemoError(
                f"--broker {url}: nothing answers at {joined.host}:{joined.port} "
                f"({exc.strerror or exc})"
            ) from exc
        yield joined
        return
    if find_mosquitto() is not None:
        broker = Mosquitto(workdir, persistence=False)
        try:
            broker.start()
        except RuntimeError as exc:
            raise DemoError(f"the private Mosquitto did not start: {exc}") from exc
        try:
            yield BrokerConfig(url=broker.url)
        finally:
            broker.stop()
        return
    try:
        from hallqctl.embedded_broker import embedded_broker
    except ImportError as exc:  # pragma: no cover - the `demo` extra brings amqtt
        raise DemoError(
            "no broker: install Mosquitto (sudo apt-get install mosquitto) or "
            "the embedded one (pip install 'hallq[demo]')"
        ) from exc
    _say(
        "Mosquitto is not installed (sudo apt-get install mosquitto): "
        "using the embedded MQTT 3.1.1 broker"
    )
    with embedded_broker(free_port()) as url:
        yield BrokerConfig(url=url, protocol="3.1.1")


def machine_notes() -> list[str]:
    """One line for each optional part this machine lacks, with what the demo does instead
    and how to add it (the voice is said by the board agents themselves)."""
    from displays.errors import FontError
    from displays.fonts import find_unifont
    from hallqctl.doctor import check_dispatch_core

    notes = []
    core = check_dispatch_core()
    if core is not None and core.result.value != "ok":
        notes.append(f"dispatch core: {core.detail} ({core.fix})")
    try:
        font = find_unifont()
    except FontError as exc:
        notes.append(f"board font: {exc}; the bundled subset draws the boards")
    else:
        if font is None:
            notes.append(
                "no system Unifont: the boards draw with the bundled subset "
                "(sudo apt-get install fonts-unifont)"
            )
    return notes


def free_http_port(host: str, port: int) -> int | None:
    """``port`` if nothing listens there, else None."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return None
    return port


def demo_config(
    cfg: HallConfig, broker: BrokerConfig, state: Path, http_port: int | None = None
) -> HallConfig:
    """The hall file made a demo: its own broker and state, the mock pin factory, a demo
    supervisor password and ID key where the file sets none, a dashboard port that is free,
    serial lines fast enough for hall time at the demo's speed (``_fast_lines``)."""
    security = cfg.security
    if security.id_hash_key is None:
        security = security.model_copy(update={"id_hash_key": SecretStr("hallq-demo-key-0001")})
    coordinator: dict[str, Any] = {"log_path": state / "events.sqlite", "comfort_synthetic": True}
    if cfg.coordinator.supervisor_password is None:
        coordinator["supervisor_password"] = SecretStr(DEMO_PASSWORD)
    if http_port:  # asked for: taken is the cause to stop on, not a demo without a page
        if free_http_port(cfg.coordinator.http_host, http_port) is None:
            raise DemoError(
                f"port {http_port} is in use (another demo?): choose another --http-port"
            )
        coordinator["http_port"] = http_port
    elif http_port == 0:
        coordinator["http_port"] = 0
    elif (
        cfg.coordinator.http_port
        and free_http_port(cfg.coordinator.http_host, cfg.coordinator.http_port) is None
    ):
        from hallqctl.mosquitto import free_port

        coordinator["http_port"] = free_port()
        _say(
            f"port {cfg.coordinator.http_port} is taken: the dashboard uses "
            f"{coordinator['http_port']} (--http-port to choose)"
        )
    hall = cfg.hall
    if port := coordinator.get("http_port", cfg.coordinator.http_port):
        # the printed tickets' QR codes lead to this dashboard, not to the hall's own server
        # (the example's queue.liwan.hall.lan)
        host = cfg.coordinator.http_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        hall = hall.model_copy(update={"public_url": f"http://{shown}:{port}"})
    return cfg.model_copy(
        update={
            "hall": hall,
            "agents": [_fast_lines(agent) for agent in cfg.agents],
            "broker": broker,
            "security": security,
            "runtime": cfg.runtime.model_copy(update={"state_dir": state, "pin_factory": "mock"}),
            "coordinator": cfg.coordinator.model_copy(update=coordinator),
        }
    )


DEMO_BAUD = 115200


def _fast_lines(agent: Any) -> Any:
    """The agent with every serial line at 115200 baud (routine for RS-485): the demo's
    hall hour passes in a wall minute, so its lines carry 60 times the calls, displays and
    LED changes of a real hour; at the hall file's 9600 baud a pad's DISPLAY queued behind
    its line's strips for seconds, minutes of hall time, and the windows served at half
    speed. The devices' time shrinks with the hall's, as the printer's settle time does."""
    devices = [
        dev.model_copy(update={"serial": dev.serial.model_copy(update={"baud": DEMO_BAUD})})
        if getattr(dev, "serial", None) is not None
        else dev
        for dev in agent.devices
    ]
    return agent.model_copy(update={"devices": devices})


def demo_day(cfg: HallConfig, today: dt.date) -> dt.date:
    """Today where the hall opens, else the next day it does: Monday to Friday, less the
    hall calendar's closed days, plus its 调休 working weekends. A demo run on a Sunday
    played a full hall on the day its own comfort index called 休息."""
    from coordinator.forecast.hall_calendar import Calendar

    calendar = Calendar.of(cfg)
    for ahead in range(60):
        day = today + dt.timedelta(days=ahead)
        if calendar.is_open(day, WORKDAYS):
            return day
    return today  # a calendar closed for two months: the demo plays today all the same


def opening_time(cfg: HallConfig, after_open_min: float = -3.0) -> float:
    """The demo's day (``demo_day``), ``after_open_min`` minutes after the hall opens (a
    few before, by default), in hall time."""
    tz = cfg.hall.tzinfo
    day = demo_day(cfg, dt.datetime.now(tz).date())
    first = cfg.hall.open_hours[0][0]
    return (dt.datetime.combine(day, first, tz) + dt.timedelta(minutes=after_open_min)).timestamp()


class Traffic:
    """Taxpayers and staff, acting only through the simulated devices' keys."""

    def __init__(
        self,
        cfg: HallConfig,
        sims: dict[str, Any],
        clock: HallClock,
        *,
        daily_volume: int,
        seed: int = 7,
        day_of_month: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.sims = sims
        self.clock = clock
        self.daily_volume = daily_volume
        self.day_of_month = day_of_month  # None: an average filing-period (征期) day
        self.rng = random.Random(seed)
        self.demand = Demand.for_services([s.code for s in cfg.services])
        self.stats = DemoStats()
        self.keys: dict[str, list[tuple[Any, int, int]]] = {}
        for agent in cfg.agents:
            for dev in agent.devices:
                if dev.kind == "keypad" and dev.id in sims:
                    bus, address = sims[dev.id]
                    for index, code in enumerate(dev.services or [], start=1):
                        self.keys.setdefault(code, []).append((bus, address, index))

    def day_arrivals(self, day: dt.date) -> list[tuple[float, str]]:
        """The day's arrivals (hall time, service): the simulator's own draw (``draw_day``
        on the same demand: profile over the open hours, mix), so a demo day and a
        simulated day of the calibrated volume are the same hall."""
        spans = open_spans(self.cfg.hall.open_hours)
        midnight = dt.datetime.combine(day, dt.time(0), self.cfg.hall.tzinfo).timestamp()
        volume = self.daily_volume * day_factor(self.day_of_month)
        drawn = draw_day(self.demand, spans, volume=volume, rng=self.rng)
        return [(midnight + a.t, a.service) for a in drawn if a.service in self.keys]

    async def arrivals(self) -> None:
        """Each taxpayer presses a key at their arrival time, kept to the hall clock: a
        sleep that overruns (a busy loop at 60x) delays a press, never drops arrivals."""
        while True:
            now = self.clock()
            day = dt.datetime.fromtimestamp(now, self.cfg.hall.tzinfo).date()
            for at, code in self.day_arrivals(day):
                if at < now:
                    continue
                await self.clock.sleep(at - self.clock())
                bus, address, key = self.rng.choice(self.keys[code])
                bus.press(address, key)
                self.stats.arrivals += 1
            tomorrow = dt.datetime.combine(
                day + dt.timedelta(days=1), dt.time(0), self.cfg.hall.tzinfo
            )
            await self.clock.sleep(tomorrow.timestamp() - self.clock())

    def _service_s(self, code: str | None) -> float:
        """Counter time, call to finish (the walk to the window included, as the seed's
        1.63 min average is what the hall's system recorded): the simulator's lognormal."""
        code = code if code in self.demand.mean_min else None
        mean = (self.demand.mean_min[code] if code else SEED_MEAN_COUNTER_MIN) * 60
        sigma = self.demand.sigma_of(code or "")
        return self.rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)

    async def staff(self, window: int, pad_id: str, rating_id: str | None) -> None:
        """One window's clerk: CALL, serve for the ticket's counter time, FINISH (and the
        taxpayer rates, while the clerk calls the next). A CALL that finds nobody is
        pressed again 5-15 s later: the simulator's idle window takes an arrival at once."""
        from firmware_bridge.frame import Command
        from firmware_bridge.sim import SimCallPad

        bus, address = self.sims[pad_id]
        pad = bus.device(address, SimCallPad)
        rating = self.sims.get(rating_id) if rating_id else None
        service_of = {s.prefix: s.code for s in self.cfg.services}
        loop = asyncio.get_running_loop()
        await self.clock.sleep(self.rng.uniform(0, 120))
        while True:
            # any DISPLAY, even the same text again: a CALL that finds nobody shows the
            # idle text it already showed, and waiting for a new one cost 5 wall seconds
            # (5 hall minutes at x60) each time
            shown = pad.received[Command.DISPLAY]
            pressed = self.clock()
            bus.press(address, "CALL")
            self.stats.presses += 1
            with contextlib.suppress(TimeoutError):
                await bus.wait_for(
                    lambda: pad.received[Command.DISPLAY] > shown,  # noqa: B023 awaited here
                    timeout=5,
                )
            text = pad.display or ""
            if not TICKET.match(text):
                await self.clock.sleep(self.rng.uniform(5, 15))
                continue
            self.stats.calls.append(pressed)
            if self.rng.random() < 0.03:
                await self.clock.sleep(40)
                bus.press(address, "RECALL")
                await self.clock.sleep(40)
                bus.press(address, "SKIP")
                continue
            # the devices' own latency (a poll round, the bus) already took part of that
            # time, which matters at high --speed
            busy = self._service_s(service_of.get(text[0]))
            await self.clock.sleep(busy - (self.clock() - pressed))
            if self.rng.random() < 0.02:
                bus.press(address, "TRANSFER", f"S{self.rng.randint(1, len(self.cfg.services))}")
                continue
            bus.press(address, "FINISH")
            if rating is not None and self.rng.random() < 0.6:
                score = self.rng.choices([r for r, _ in RATINGS], [w for _, w in RATINGS])[0]
                loop.call_later(3 / self.clock.speed, rating[0].rate, rating[1], score)


def _staffing(cfg: HallConfig) -> list[tuple[int, str, str | None]]:
    pads: dict[int, str] = {}
    ratings: dict[int, str] = {}
    for agent in cfg.agents:
        for dev in agent.devices:
            if isinstance(dev, CallPadDevice):
                pads[dev.window] = dev.id
            elif isinstance(dev, RatingPadDevice):
                ratings[dev.window] = dev.id
    return [(w, pads[w], ratings.get(w)) for w in sorted(pads)]


PROGRESS_EVERY_S = 30.0  # wall seconds between progress lines where no screen is redrawn


def progress_line(engine: Any, clock: HallClock, stats: DemoStats) -> str:
    """The hall in one line, for a log or a pipe (a terminal gets the redrawn table): a
    run there said nothing between its banner and its KPIs."""
    now = clock()
    total = engine.stats_state(0).total
    waiting = sum(engine.waiting(c) for c in engine.service_idx)
    busy = sum(1 for w in engine.windows.values() if w.current is not None)
    behind = stats.arrivals - total.issued
    avg = "-" if total.avg_wait_s is None else f"{total.avg_wait_s / 60:.1f} min"
    return (
        f"{dt.datetime.fromtimestamp(now, engine.tz):%H:%M} hall time: issued {total.issued}, "
        f"waiting {waiting}, windows busy {busy}, served {total.served}, avg wait {avg}"
        + (f", {behind} at the kiosks" if behind > 10 else "")
    )


def summary_table(engine: Any, clock: HallClock, stats: DemoStats) -> Any:
    from rich.table import Table

    now = clock()
    local = dt.datetime.fromtimestamp(now, engine.tz)
    stats_state = engine.stats_state(0)
    busy = sum(1 for w in engine.windows.values() if w.current is not None)
    open_ = sum(1 for w in engine.windows.values() if w.status.value == "open")
    per_min = sum(1 for t in stats.calls if now - t <= 300) / 5  # the last 5 hall minutes
    avg = stats_state.total.avg_wait_s
    table = Table(
        title=f"{engine.cfg.hall.name}\n{local:%Y-%m-%d %a  %H:%M:%S}  ×{clock.speed:g}",
        show_header=True,
    )
    table.add_column("service")
    table.add_column("waiting", justify="right")
    table.add_column("issued", justify="right")
    table.add_column("avg wait", justify="right")
    for code, service in engine.services.items():
        kpi = stats_state.per_service[code]
        table.add_row(
            service.name,
            str(engine.waiting(code)),
            str(kpi.issued),
            f"{kpi.avg_wait_s / 60:.1f} min" if kpi.avg_wait_s is not None else "-",
        )
    table.caption = (
        f"windows busy {busy}/{open_} open · calls/min {per_min:.1f} · "
        f"issued {stats_state.total.issued} · served {stats_state.total.served} · "
        f"avg wait {avg / 60:.2f} min"
        if avg is not None
        else f"windows busy {busy}/{open_} open · issued {stats_state.total.issued}"
    )
    return table


def kpi_lines(engine: Any, traffic: DemoStats | None = None) -> list[str]:
    stats = engine.stats_state(0)
    total = stats.total
    lines = [f"issued {total.issued}, served {total.served}, no-shows {total.no_show}"]
    behind = (traffic.arrivals - total.issued) if traffic is not None else 0
    if traffic is not None and behind > max(10, traffic.arrivals // 20):
        # the kiosks serve one press at a time, in wall time: at x60 the example hall's
        # peak is ~30 presses a wall second; a loaded machine issues fewer, and the waits
        # shown are then shorter than the hall's
        lines.append(
            f"{behind} of {traffic.arrivals} arrivals still at the kiosks: this machine "
            "issues tickets slower than the hall clock needs (try a lower --speed)"
        )
    if total.avg_wait_s is not None:
        lines.append(
            f"average wait {total.avg_wait_s / 60:.2f} min, p90 "
            f"{(total.p90_wait_s or 0) / 60:.2f} min"
        )
    if total.avg_service_s is not None:
        lines.append(f"average counter time {total.avg_service_s / 60:.2f} min")
    return lines


STOP_S = 5.0  # every component gets this long to stop; what does not is named
START_S = 30.0


async def _started(
    name: str,
    task: asyncio.Task[Any],
    ready: asyncio.Event,
    timeout: float = START_S,  # noqa: ASYNC109  the demo passes its own start/stop bounds
) -> None:
    """Wait until the component says it is ready; if it dies first, its error is the
    demo's error at once (not a timeout 30 s later)."""
    waiter = asyncio.ensure_future(ready.wait())
    try:
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
    if task in done:
        raise DemoError(f"{name} failed at start: {_cause(task)}")
    if not done:
        raise DemoError(f"{name} was not ready within {timeout:g} s")


def _cause(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if exc is None:
        return "ended without an error"
    return f"{type(exc).__name__}: {exc}"


def _check_running(components: dict[str, asyncio.Task[Any]]) -> None:
    for name, task in components.items():
        if task.done():
            raise DemoError(f"{name} stopped: {_cause(task)}")


async def stop_components(
    components: dict[str, asyncio.Task[Any]],
    timeout: float = STOP_S,  # noqa: ASYNC109  the demo passes its own start/stop bounds
) -> list[str]:
    """Cancel every component at once and wait at most ``timeout`` for all of them; the
    names of those still running (a swallowed cancellation, a blocked thread)."""
    pending = {task for task in components.values() if not task.done()}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()  # again each round: Python 3.11's wait_for can lose one
        _, pending = await asyncio.wait(
            pending, timeout=min(timeout / 2, deadline - time.monotonic())
        )
    return [name for name, task in components.items() if task in pending]


async def run_demo(
    config: Path | None = None,
    *,
    speed: float = 60.0,
    duration: float | None = None,
    volume: int = int(CALIBRATED_VOLUME),
    broker_url: str | None = None,
    state_dir: Path | None = None,
    live: bool | None = None,
    on_ready: Callable[[Any], None] | None = None,
    seed: int = 7,
    http_port: int | None = None,
    after_open_min: float = -3.0,
    until: Callable[[Any], bool] | None = None,
) -> list[str]:
    """Run the demo; returns the day's KPI lines (also printed). ``http_port`` overrides
    the dashboard's port (0 turns it off; by default the hall file's, or a free one when
    that is taken). The hall clock starts ``after_open_min`` minutes after opening.
    ``until(engine)``, checked twice a second, ends it early (a test waits for what it
    checks, with ``duration`` as the limit). ``live``: redraw a table (default: on a
    terminal). Raises :class:`DemoError` with the root cause when a component fails."""
    from rich.console import Console
    from rich.live import Live

    from coordinator.service import Coordinator, web_dashboard
    from hallq.config import load_config

    console = Console()
    if live is None:  # a redrawn table on a terminal; a line now and then into a pipe
        live = console.is_terminal
    base = load_config(config or DEFAULT_CONFIG)
    for note in machine_notes():
        _say(note)
    with tempfile.TemporaryDirectory(prefix="hallq-demo-") as tmp:
        work = Path(state_dir) if state_dir else Path(tmp)
        (work / "broker").mkdir(parents=True, exist_ok=True)
        async with demo_broker(work / "broker", broker_url) as broker:
            cfg = demo_config(base, broker, work / "state", http_port)
            # the coordinator's per-client rate limit is in wall seconds; a hall hour that
            # passes in a wall minute sends its devices' keys that much faster
            sec = cfg.security
            cfg = cfg.model_copy(
                update={
                    "security": sec.model_copy(
                        update={
                            "client_rate_per_s": sec.client_rate_per_s * max(1.0, speed / 10),
                            "client_burst": int(sec.client_burst * max(1.0, speed / 10)),
                        }
                    )
                }
            )
            clock = HallClock(opening_time(cfg, after_open_min), speed, running=False)
            coordinator = Coordinator(cfg, clock=clock)
            components: dict[str, asyncio.Task[Any]] = {}
            stuck: list[str] = []
            interrupted = False
            try:
                async with contextlib.AsyncExitStack() as stack:
                    web = await stack.enter_async_context(web_dashboard(coordinator))
                    session = await stack.enter_async_context(coordinator.make_session())
                    try:
                        traffic = await _start_hall(
                            cfg, coordinator, session, clock, work, stack, components, volume, seed
                        )
                        console.print(
                            f"[bold]hallq demo[/]: {cfg.hall.name}, "
                            f"{len(cfg.windows)} windows, {len(cfg.agents)} agents, "
                            f"broker {broker.url}, ×{speed:g}"
                        )
                        if web is not None:
                            console.print(f"dashboard: {web.url}/  ({login_hint(base, cfg)})")
                        if on_ready is not None:
                            on_ready(coordinator)
                        try:
                            if live:
                                with Live(
                                    summary_table(coordinator.engine, clock, traffic.stats),
                                    console=console,
                                    refresh_per_second=2,
                                ) as screen:
                                    await _wait(
                                        duration,
                                        components,
                                        lambda: screen.update(
                                            summary_table(coordinator.engine, clock, traffic.stats)
                                        ),
                                    )
                            else:
                                said = [-PROGRESS_EVERY_S]  # (the first at once)

                                def tick() -> None:
                                    if time.monotonic() - said[0] >= PROGRESS_EVERY_S:
                                        said[0] = time.monotonic()
                                        console.print(
                                            progress_line(coordinator.engine, clock, traffic.stats),
                                            soft_wrap=True,
                                        )

                                await _wait(
                                    duration,
                                    components,
                                    tick,
                                    None if until is None else lambda: until(coordinator.engine),
                                )
                        except asyncio.CancelledError:  # Ctrl-C: the end of the day, as
                            interrupted = True  # --duration would have made it
                    except DemoError as exc:
                        # the root cause first, then a quiet stop: what the other components
                        # log while they go down would only bury it
                        _say(f"error: {exc}")
                        exc.reported = True
                        logging.disable(logging.CRITICAL)
                        raise
                    finally:
                        try:
                            stuck = await stop_components(components)
                        finally:
                            logging.disable(logging.NOTSET)
                    lines = kpi_lines(coordinator.engine, traffic.stats)
            except BaseException:
                if stuck:  # said even when another error is on its way out
                    _say(f"did not stop within {STOP_S:g} s: {', '.join(stuck)}")
                raise
            finally:
                coordinator.close()
            if stuck:
                raise DemoError(f"did not stop within {STOP_S:g} s: {', '.join(stuck)}")
    console.print("[bold]today's KPIs[/]")
    for line in lines:
        console.print("  " + line)
    if interrupted:
        raise asyncio.CancelledError
    return lines


async def _start_hall(
    cfg: HallConfig,
    coordinator: Any,
    session: Any,
    clock: HallClock,
    work: Path,
    stack: contextlib.AsyncExitStack,
    components: dict[str, asyncio.Task[Any]],
    volume: int,
    seed: int,
) -> Traffic:
    """The coordinator, then each agent on its simulated devices, then the people; each
    must be ready before the next starts, so a failure names the first thing that broke."""
    from edge.agent import run_agent
    from edge.hall_devices import serial_devices
    from firmware_bridge.sim.hall import simulate_devices
    from firmware_bridge.timing import LinkTiming

    ready = asyncio.Event()
    components["coordinator"] = asyncio.create_task(coordinator.run(session, ready))
    await _started("coordinator", components["coordinator"], ready)
    sims: dict[str, Any] = {}
    # the devices' physical time (a ticket takes half a second to print) runs at hall speed
    timing = LinkTiming(poll_interval=0.2, print_settle=0.5 / clock.speed)
    for agent in cfg.agents:
        sim_dir = work / "sim" / agent.id
        hall = await stack.enter_async_context(
            simulate_devices(serial_devices(agent.devices), sim_dir)
        )
        sims.update(hall.devices)
        agent_ready = asyncio.Event()
        name = f"agent {agent.id}"
        components[name] = asyncio.create_task(
            run_agent(
                cfg,
                agent.id,
                sim_dir=sim_dir,
                simulate_all=True,
                clock=clock,
                ready=agent_ready,
                timing=timing,
            )
        )
        await _started(name, components[name], agent_ready)
    clock.run()
    traffic = Traffic(cfg, sims, clock, daily_volume=volume, seed=seed)
    components["traffic"] = asyncio.create_task(traffic.arrivals())
    for w, pad, rating in _staffing(cfg):
        components[f"staff at window {w}"] = asyncio.create_task(traffic.staff(w, pad, rating))
    return traffic


def login_hint(base: HallConfig, cfg: HallConfig) -> str:
    """The supervisor desk's login as the person should type it: the demo's own password
    only when the demo set it, never one from HALLQ_SUPERVISOR_PASSWORD or the hall file."""
    user = cfg.coordinator.supervisor_user
    if base.coordinator.supervisor_password is None:
        return f"supervisor: {user} / {DEMO_PASSWORD}"
    return f"supervisor: {user}, with the password you set"


async def _wait(
    duration: float | None,
    components: dict[str, asyncio.Task[Any]],
    tick: Callable[[], None],
    done: Callable[[], bool] | None = None,
) -> None:
    start = time.monotonic()
    while duration is None or time.monotonic() - start < duration:
        await asyncio.sleep(0.5)
        _check_running(components)
        tick()
        if done is not None and done():
            return
