"""One agent process per Pi: the hall file's devices for that agent, wired to the bus.

``run_agent`` opens the serial lines (or their simulators), the GPIO keys and the MQTT
session, starts the role's worker (dispenser or window) and feeds it every device update
until cancelled. Board agents (LED boards, voice) live in :mod:`edge.board`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.hall_devices import serial_devices
from edge.health import Health, report_link_health
from firmware_bridge.seqstore import EventSeqStore
from firmware_bridge.timing import LinkTiming
from firmware_bridge.wiring import wire_devices
from hallq.aio import BackgroundTasks
from hallq.bus import Session
from hallq.config import Agent, HallConfig, device_services
from hallq.sdnotify import Notifier, supervised

if TYPE_CHECKING:
    from edge.dispenser import DispenserAgent
    from edge.leases import LeaseBook
    from edge.window import WindowAgent

log = logging.getLogger("hallq.edge")

# devices drawn or spoken by edge.panels (displays, Pillow, the font): imported only by an
# agent that has one, so a dispenser or a pad-only window Pi starts without them
PANEL_KINDS = frozenset({"led_max7219", "led_serial", "speaker"})
PRINTER_POLL_S = 30.0
LEASE_CHECK_S = 60.0


def make_session(cfg: HallConfig, agent: Agent) -> Session:
    creds = cfg.broker.credentials_dir
    if agent.credentials is None and creds is not None and not (creds / agent.id).is_dir():
        log.warning(
            "%s: no broker credentials in %s/%s (copy the directory `hallq "
            "provision` wrote for it); trying the hall file's broker login",
            agent.id,
            creds,
            agent.id,
        )
    return Session(
        cfg.broker.for_client(agent.id, agent.credentials),
        hall=cfg.hall.id,
        role=agent.role,
        client_id=agent.id,
        state_dir=cfg.runtime.state_dir,
        outbox_max=cfg.runtime.outbox_max,
        drain_per_s=cfg.security.client_rate_per_s / 2,
        credentials=lambda: cfg.broker.for_client(agent.id, agent.credentials),
    )


def _gpio_event(agent: Agent, device_id: str, window: int | None, name: str) -> Any:
    """A GPIO key as the same event its serial twin would produce."""
    if agent.role == "window":
        from firmware_bridge.devices.call_pad import PadKey, PadKeyPress

        key = PadKey.__members__.get(name.upper())
        return None if key is None else PadKeyPress(device_id, 0, window, key)
    from firmware_bridge.devices.keypad import ServiceKey

    services = [s for d in agent.devices if d.id == device_id for s in device_services(d) or []]
    if name in services:
        return ServiceKey(device_id, 0, services.index(name) + 1, name)
    return None


async def run_agent(
    cfg: HallConfig,
    agent_id: str,
    *,
    sim_dir: Path | None = None,
    simulate_all: bool = False,
    clock: Callable[[], float] = time.time,
    ready: asyncio.Event | None = None,
    timing: LinkTiming | None = None,
) -> None:
    """Serve one agent until cancelled (SIGTERM/SIGINT in the CLI)."""
    agent = cfg.agent(agent_id)
    wiring = wire_devices(
        serial_devices(agent.devices),
        id_hash_key=cfg.security.id_hash_key,
        sim_dir=sim_dir,
        simulate_all=simulate_all,
        timing=timing,
        seq_store=EventSeqStore(
            cfg.runtime.state_dir / f"event-seq-{cfg.hall.id}-{agent.id}.sqlite"
        ),
    )
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    gpio: list[Any] = []  # edge.gpio's Buttons and Indicators (gpiozero, imported if used)
    leases: LeaseBook | None = None
    dispenser: DispenserAgent | None = None
    window_agent: WindowAgent | None = None
    worker: DispenserAgent | WindowAgent | BoardWorker
    async with make_session(cfg, agent) as session, wiring:
        try:
            # each role's worker and drivers are imported by its own agents only
            if agent.role == "dispenser":
                from edge.dispenser import DispenserAgent
                from edge.leases import LeaseBook

                leases = LeaseBook(
                    cfg.runtime.state_dir / f"leases-{cfg.hall.id}-{agent.id}.sqlite"
                )
                printer = next(iter(wiring.printers.values()), None)
                worker = dispenser = DispenserAgent(
                    cfg, agent, session, leases, printer, clock=clock
                )
            elif agent.role == "window":
                from edge.window import WindowAgent
                from firmware_bridge.devices.call_pad import CallPad

                pads = {
                    d.window: d
                    for d in wiring.drivers.values()
                    if isinstance(d, CallPad) and d.window is not None
                }
                worker = window_agent = WindowAgent(cfg, agent, session, pads)
            else:
                worker = BoardWorker(agent, Health(session))
            await worker.start()
            factory = None
            for dev in agent.devices:
                if dev.kind == "gpio_buttons" and dev.gpio:
                    from edge.gpio import Buttons, Indicators, make_pin_factory, split_pins

                    factory = factory or make_pin_factory(cfg.runtime.pin_factory)
                    keys, lamps = split_pins(dev.gpio)

                    def on_press(
                        name: str, dev_id: str = dev.id, window: int | None = dev.window
                    ) -> None:
                        event = _gpio_event(agent, dev_id, window, name)
                        if event is not None:
                            events.put_nowait(event)

                    gpio.append(Buttons(keys, factory, on_press, loop=loop))
                    if lamps:
                        gpio.append(Indicators(lamps, factory))
            async with contextlib.AsyncExitStack() as stack:
                if any(d.kind in PANEL_KINDS for d in agent.devices):
                    from edge.panels import Panels

                    panels: Panels | None = await stack.enter_async_context(
                        Panels(
                            cfg,
                            agent.devices,
                            session,
                            wiring.drivers,
                            worker.health,
                            emulate=simulate_all,
                            output_dir=cfg.runtime.state_dir / "boards" / agent.id,
                        )
                    )
                else:
                    panels = None
                chores = await stack.enter_async_context(BackgroundTasks(agent.id))
                for link in wiring.links.values():
                    chores.spawn(_feed(link.updates(), events), name=f"feed {link.port}")
                if panels is not None and panels.wanted:
                    chores.spawn(panels.run(), name="panels")
                if dispenser is not None:
                    chores.spawn(_every(LEASE_CHECK_S, dispenser.top_up_leases), name="leases")
                    chores.spawn(_every(PRINTER_POLL_S, dispenser.poll_printer), name="printer")
                chores.spawn(_build_wire_models(session), name="wire models")
                if ready is not None:
                    await session.wait_connected()
                    ready.set()
                async with supervised(
                    Notifier.from_env(),
                    session.wait_connected(),
                    lambda: status_line(session, worker.health),
                ):
                    await _dispatch(worker, events, one_at_a_time=dispenser is not None)
        finally:
            if dispenser is not None:
                await dispenser.close()
            if window_agent is not None:
                await window_agent.close()
            for item in gpio:
                item.close()
            if leases is not None:
                leases.close()


def status_line(session: Session, health: Health) -> str:
    """For ``systemctl status``: "online, printer-1 paper_near_end"."""
    link = "online" if session.connected else "broker lost"
    faults = [f"{c.name} {c.status}" for c in health.components() if not c.ok]
    return ", ".join([link, *faults]) if faults else f"{link}, all devices ok"


class BoardWorker:
    """A board agent has no keys: its lines and LED controllers only report health."""

    def __init__(self, agent: Agent, health: Health) -> None:
        self.agent = agent
        self.health = health

    async def start(self) -> None:
        self.health.session.on_connect(self.health.publish)

    async def handle(self, update: Any) -> None:
        await report_link_health(self.health, update)


async def _build_wire_models(session: Session) -> None:
    """The message models are built on first use (``defer_build``), which keeps ~30 ms of
    schema building out of start-up; once online the agent builds the validators of what
    its subscriptions bring in (every arrival is decoded with them), so its first board
    state or reply does not pay for it. What it only sends builds its model when first
    sent (the command of a key press always did: a command union's validator, which
    sending never uses, was ~0.3 MB of a window agent), and other topic groups' models are
    never even created in an agent (:mod:`hallq.messages` imports each group on first
    use)."""
    from pydantic import BaseModel

    from hallq.contract import receivable
    from hallq.messages import adapter

    await session.wait_connected()
    for spec in dict.fromkeys(s for f in session.filters for s in receivable(f)):
        if isinstance(spec.payload, type) and issubclass(spec.payload, BaseModel):
            spec.payload.model_rebuild()
        adapter(spec.payload)
        await asyncio.sleep(0)


async def _feed(updates: Any, events: asyncio.Queue[Any]) -> None:
    async for update in updates:
        events.put_nowait(update)


async def _every(period: float, job: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            await job()
        except Exception:
            log.exception("periodic %s failed", getattr(job, "__name__", job))


async def _dispatch(
    worker: DispenserAgent | WindowAgent | BoardWorker,
    events: asyncio.Queue[Any],
    *,
    one_at_a_time: bool,
) -> None:
    """Dispensers serve one key press at a time; window pads each get their own turn so a
    slow reply at one window never holds up the others."""
    async with BackgroundTasks(f"{worker.agent.id} pads") as running:
        while True:
            update = await events.get()
            if one_at_a_time:
                await _guarded(worker, update)
            else:
                running.spawn(_guarded(worker, update))


async def _guarded(worker: DispenserAgent | WindowAgent | BoardWorker, update: Any) -> None:
    try:
        await worker.handle(update)
    except Exception:
        log.exception("%s: handling %r failed", worker.agent.id, type(update).__name__)
