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
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from coordinator.simulation.profile import HALF_HOURS, MIX, SERVICE_MIN, filing_factor
from hallq.config import BrokerConfig, CallPadDevice, HallConfig, RatingPadDevice

log = logging.getLogger("hallqctl.demo")

DEMO_PASSWORD = "hallq-demo"  # when HALLQ_SUPERVISOR_PASSWORD is unset; then printed
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"
TICKET = re.compile(r"^[A-Z][0-9]{2,5}$")
RATINGS = [(4, 0.70), (3, 0.20), (2, 0.07), (1, 0.03)]


class HallClock:
    """Hall time, ``speed`` times faster than the wall clock, starting at ``start``."""

    def __init__(self, start: float, speed: float) -> None:
        self.start = start
        self.speed = speed
        self._wall0 = time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self._wall0) * self.speed

    async def sleep(self, hall_seconds: float) -> None:
        await asyncio.sleep(max(0.0, hall_seconds) / self.speed)


@dataclass
class DemoStats:
    arrivals: int = 0
    presses: int = 0
    calls: list[float] = field(default_factory=list)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def demo_broker(cfg: HallConfig, workdir: Path, url: str | None = None) -> AsyncIterator[
        BrokerConfig]:
    """The broker named in the config (or ``url``) if it answers; else a private Mosquitto if
    the binary exists; else an embedded MQTT 3.1.1 broker (amqtt), so pip install suffices."""
    from hallqctl.mosquitto import Mosquitto, find_mosquitto, free_port

    if url is not None:
        yield BrokerConfig(url=url)
        return
    if _reachable(cfg.broker.host, cfg.broker.port):
        yield cfg.broker
        return
    if find_mosquitto() is not None:
        broker = Mosquitto(workdir, persistence=False)
        broker.start()
        try:
            yield BrokerConfig(url=broker.url)
        finally:
            broker.stop()
        return
    from hallqctl.embedded_broker import embedded_broker

    with embedded_broker(free_port()) as url:
        yield BrokerConfig(url=url, protocol="3.1.1")


def demo_config(cfg: HallConfig, broker: BrokerConfig, state: Path) -> HallConfig:
    security = cfg.security
    if security.id_hash_key is None:
        security = security.model_copy(update={"id_hash_key": SecretStr("hallq-demo-key-0001")})
    coordinator: dict[str, Any] = {"log_path": state / "events.sqlite", "comfort_synthetic": True}
    if cfg.coordinator.supervisor_password is None:
        coordinator["supervisor_password"] = SecretStr(DEMO_PASSWORD)
    return cfg.model_copy(update={
        "broker": broker,
        "security": security,
        "runtime": cfg.runtime.model_copy(update={"state_dir": state, "pin_factory": "mock"}),
        "coordinator": cfg.coordinator.model_copy(update=coordinator),
    })


def opening_time(cfg: HallConfig) -> float:
    """Today, a few minutes before the hall opens, in hall time."""
    tz = cfg.hall.tzinfo
    today = dt.datetime.now(tz).date()
    first = cfg.hall.open_hours[0][0]
    return (dt.datetime.combine(today, first, tz) - dt.timedelta(minutes=3)).timestamp()


class Traffic:
    """Taxpayers and staff, acting only through the simulated devices' keys."""

    def __init__(self, cfg: HallConfig, sims: dict[str, Any], clock: HallClock, *,
                 daily_volume: int, seed: int = 7) -> None:
        self.cfg = cfg
        self.sims = sims
        self.clock = clock
        self.daily_volume = daily_volume
        self.rng = random.Random(seed)
        self.stats = DemoStats()
        self.keys: dict[str, list[tuple[Any, int, int]]] = {}
        for agent in cfg.agents:
            for dev in agent.devices:
                if dev.kind == "keypad" and dev.id in sims:
                    bus, address = sims[dev.id]
                    for index, code in enumerate(dev.services or [], start=1):
                        self.keys.setdefault(code, []).append((bus, address, index))

    def rate_now(self, now: float) -> float:
        """Arrivals per hall second at ``now`` (non-homogeneous Poisson)."""
        local = dt.datetime.fromtimestamp(now, self.cfg.hall.tzinfo)
        slot = (local.hour * 60 + local.minute - 9 * 60) // 30
        if not 0 <= slot < len(HALF_HOURS):
            return 0.0
        share = HALF_HOURS[slot] / sum(HALF_HOURS)
        return self.daily_volume * filing_factor(local.day) * share / 1800.0

    def _service(self) -> str:
        codes = [c for c in MIX if c in self.keys]
        return self.rng.choices(codes, weights=[MIX[c] for c in codes])[0] if codes else ""

    async def arrivals(self) -> None:
        while True:
            rate = self.rate_now(self.clock())
            if rate <= 0:
                await self.clock.sleep(60)
                continue
            await self.clock.sleep(self.rng.expovariate(rate))
            code = self._service()
            if not code:
                continue
            bus, address, key = self.rng.choice(self.keys[code])
            bus.press(address, key)
            self.stats.arrivals += 1

    def _service_s(self, code: str | None) -> float:
        mean = SERVICE_MIN.get(code or "", 1.63) * 60
        sigma = 0.5
        return self.rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)

    async def staff(self, window: int, pad_id: str, rating_id: str | None) -> None:
        from firmware_bridge.sim import SimCallPad

        bus, address = self.sims[pad_id]
        pad = bus.device(address, SimCallPad)
        rating = self.sims.get(rating_id) if rating_id else None
        service_of = {s.prefix: s.code for s in self.cfg.services}
        await self.clock.sleep(self.rng.uniform(0, 120))
        while True:
            shown = len(pad.displays)
            pressed = self.clock()
            bus.press(address, "CALL")
            self.stats.presses += 1
            with contextlib.suppress(TimeoutError):
                await bus.wait_for(lambda: len(pad.displays) > shown,  # noqa: B023 awaited here
                                   timeout=5)
            text = pad.display or ""
            if not TICKET.match(text):
                await self.clock.sleep(self.rng.uniform(15, 45))
                continue
            self.stats.calls.append(pressed)
            if self.rng.random() < 0.03:
                await self.clock.sleep(40)
                bus.press(address, "RECALL")
                await self.clock.sleep(40)
                bus.press(address, "SKIP")
                continue
            # the taxpayer walks over, then is served; the devices' own latency (a poll round,
            # the bus) already took part of that time, which matters at high --speed
            busy = self.rng.uniform(10, 30) + self._service_s(service_of.get(text[0]))
            await self.clock.sleep(busy - (self.clock() - pressed))
            if self.rng.random() < 0.02:
                bus.press(address, "TRANSFER", f"S{self.rng.randint(1, len(self.cfg.services))}")
                continue
            bus.press(address, "FINISH")
            if rating is not None and self.rng.random() < 0.6:
                await self.clock.sleep(3)
                score = self.rng.choices([r for r, _ in RATINGS], [w for _, w in RATINGS])[0]
                rating[0].rate(rating[1], score)


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


def summary_table(engine: Any, clock: HallClock, stats: DemoStats) -> Any:
    from rich.table import Table

    now = clock()
    local = dt.datetime.fromtimestamp(now, engine.tz)
    stats_state = engine.stats_state(0)
    busy = sum(1 for w in engine.windows.values() if w.current is not None)
    open_ = sum(1 for w in engine.windows.values() if w.status.value == "open")
    per_min = sum(1 for t in stats.calls if now - t <= 60)
    avg = stats_state.total.avg_wait_s
    table = Table(title=f"{engine.cfg.hall.name}  {local:%H:%M:%S}  ×{clock.speed:g}",
                  show_header=True)
    table.add_column("service")
    table.add_column("waiting", justify="right")
    table.add_column("issued", justify="right")
    table.add_column("avg wait", justify="right")
    for code, service in engine.services.items():
        kpi = stats_state.per_service[code]
        table.add_row(service.name, str(engine.core.waiting(engine.service_idx[code])),
                      str(kpi.issued),
                      f"{kpi.avg_wait_s / 60:.1f} min" if kpi.avg_wait_s is not None else "-")
    table.caption = (f"windows busy {busy}/{open_} open · calls/min {per_min} · "
                     f"issued {stats_state.total.issued} · served {stats_state.total.served} · "
                     f"avg wait {avg / 60:.2f} min" if avg is not None else
                     f"windows busy {busy}/{open_} open · issued {stats_state.total.issued}")
    return table


def kpi_lines(engine: Any) -> list[str]:
    stats = engine.stats_state(0)
    total = stats.total
    lines = [f"issued {total.issued}, served {total.served}, no-shows {total.no_show}"]
    if total.avg_wait_s is not None:
        lines.append(f"average wait {total.avg_wait_s / 60:.2f} min, p90 "
                     f"{(total.p90_wait_s or 0) / 60:.2f} min")
    if total.avg_service_s is not None:
        lines.append(f"average counter time {total.avg_service_s / 60:.2f} min")
    return lines


async def run_demo(config: Path = DEFAULT_CONFIG, *, speed: float = 60.0,
                   duration: float | None = None, volume: int = 2400,
                   broker_url: str | None = None, state_dir: Path | None = None,
                   live: bool = True, on_ready: Callable[[Any], None] | None = None,
                   seed: int = 7, http_port: int | None = None,
                   until: Callable[[Any], bool] | None = None) -> list[str]:
    """Run the demo; returns the day's KPI lines (also printed). ``http_port`` overrides
    the dashboard's port (0 turns it off); ``until(engine)``, checked twice a second, ends
    it early (a test waits for what it checks, with ``duration`` as the limit)."""
    from rich.console import Console
    from rich.live import Live

    from coordinator.service import Coordinator, web_dashboard
    from edge.agent import run_agent
    from edge.hall_devices import serial_devices
    from firmware_bridge.sim.hall import SimulatedHall, simulate_devices
    from firmware_bridge.timing import LinkTiming
    from hallq.config import load_config

    console = Console()
    base = load_config(config)
    with tempfile.TemporaryDirectory(prefix="hallq-demo-") as tmp:
        work = Path(state_dir) if state_dir else Path(tmp)
        (work / "broker").mkdir(parents=True, exist_ok=True)
        async with demo_broker(base, work / "broker", broker_url) as broker:
            cfg = demo_config(base, broker, work / "state")
            if http_port is not None:
                cfg = cfg.model_copy(update={"coordinator": cfg.coordinator.model_copy(
                    update={"http_port": http_port})})
            # the coordinator's per-client rate limit is in wall seconds; a hall hour that
            # passes in a wall minute sends its devices' keys that much faster
            sec = cfg.security
            cfg = cfg.model_copy(update={"security": sec.model_copy(update={
                "client_rate_per_s": sec.client_rate_per_s * max(1.0, speed / 10),
                "client_burst": int(sec.client_burst * max(1.0, speed / 10))})})
            clock = HallClock(opening_time(cfg), speed)
            coordinator = Coordinator(cfg, clock=clock)
            sims: dict[str, Any] = {}
            halls: list[SimulatedHall] = []
            tasks: list[asyncio.Task[Any]] = []
            async with contextlib.AsyncExitStack() as stack:
                web = await stack.enter_async_context(web_dashboard(coordinator))
                session = await stack.enter_async_context(coordinator.make_session())
                ready = asyncio.Event()
                tasks.append(asyncio.create_task(coordinator.run(session, ready)))
                await asyncio.wait_for(ready.wait(), 30)
                timing = LinkTiming(poll_interval=0.2)
                for agent in cfg.agents:
                    sim_dir = work / "sim" / agent.id
                    hall = await stack.enter_async_context(
                        simulate_devices(serial_devices(agent.devices), sim_dir))
                    halls.append(hall)
                    sims.update(hall.devices)
                    agent_ready = asyncio.Event()
                    tasks.append(asyncio.create_task(run_agent(
                        cfg, agent.id, sim_dir=sim_dir, simulate_all=True, clock=clock,
                        ready=agent_ready, timing=timing)))
                    await asyncio.wait_for(agent_ready.wait(), 30)
                traffic = Traffic(cfg, sims, clock, daily_volume=volume, seed=seed)
                tasks.append(asyncio.create_task(traffic.arrivals()))
                tasks += [asyncio.create_task(traffic.staff(w, pad, rating))
                          for w, pad, rating in _staffing(cfg)]
                console.print(f"[bold]hallq demo[/]: {cfg.hall.name}, {len(cfg.windows)} windows, "
                              f"{len(cfg.agents)} agents, broker {broker.url}, ×{speed:g}")
                if web is not None:
                    user = cfg.coordinator.supervisor_user
                    made = base.coordinator.supervisor_password is None
                    login = f"  (supervisor desk login: {user} / {DEMO_PASSWORD})" if made else ""
                    console.print(f"dashboard: {web.url}/{login}")
                if on_ready is not None:
                    on_ready(coordinator)
                try:
                    if live:
                        with Live(summary_table(coordinator.engine, clock, traffic.stats),
                                  console=console, refresh_per_second=2) as screen:
                            await _wait(duration, lambda: screen.update(
                                summary_table(coordinator.engine, clock, traffic.stats)))
                    else:
                        await _wait(duration, lambda: None,
                                    None if until is None else lambda: until(coordinator.engine))
                finally:
                    await _stop_all(tasks)
                lines = kpi_lines(coordinator.engine)
            coordinator.close()
    console.print("[bold]today's KPIs[/]")
    for line in lines:
        console.print("  " + line)
    return lines


async def _stop_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Stop the demo's tasks, newest first, to the end even when the demo is cancelled
    again meanwhile (``cancel_and_wait`` repeats its cancel every 0.5 s): cut short, it
    would leave agents running on devices that the exit stack then closes."""
    from hallq.aio import cancel_and_wait

    async def each() -> None:
        for task in reversed(tasks):
            await cancel_and_wait(task)

    stopping = asyncio.ensure_future(each())
    cancelled = False
    while not stopping.done():
        try:
            await asyncio.shield(stopping)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


async def _wait(duration: float | None, tick: Callable[[], None],
                done: Callable[[], bool] | None = None) -> None:
    start = time.monotonic()
    while duration is None or time.monotonic() - start < duration:
        await asyncio.sleep(0.5)
        tick()
        if done is not None and done():
            return
