"""An agent's LED panels and speakers, driven by the hall's retained state and call events.

Main and zone boards follow the retained board summary, window strips their window's
retained state; a call event flashes the call and is announced (unless withdrawn first:
a voided ticket's event names the window). When the coordinator's presence goes offline
the panels show it discreetly instead of letting stale calls look live.
Animation runs on the monotonic clock; a frame goes to the sink only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from displays.brightness import DEFAULT_SCHEDULE
from displays.errors import VoiceError
from displays.fonts import default_bits_font
from displays.serial_led import SerialLedSink
from displays.sinks import Backend, is_emulator, open_sink
from displays.strip import WindowStrip
from edge.hall_devices import layout_for, panel_spec
from edge.health import Health
from hallq import messages as m
from hallq.bus import Incoming, Session
from hallq.config import (
    Device,
    HallConfig,
    LedDevice,
    LedMax7219Device,
    LedSerialDevice,
    SpeakerDevice,
)

if TYPE_CHECKING:  # Pillow's side (boards, MAX7219 panels, the emulator) and the voice:
    # imported only by an agent that has them (~2.5 MB a window Pi with strips goes without)
    from displays.announcer import Announcer
    from displays.board import CallBoard

log = logging.getLogger("hallq.edge.panels")

LED_KINDS = frozenset({"led_max7219", "led_serial"})
MAX_SLEEP_S = 1.0
_VOICE_OFF_SAID = False
SAVE_EVERY_S = 1.0  # emulated panels are written as PNG for people to look at, not per frame


@dataclass
class Panel:
    device: LedDevice
    layout: CallBoard | WindowStrip
    sink: Any
    last: bytes | None = None
    brightness: int | None = None
    saved_at: float = 0.0


@dataclass
class Panels:
    cfg: HallConfig
    devices: list[Device]
    session: Session
    drivers: dict[str, Any]
    health: Health
    emulate: bool = False
    output_dir: Path | None = None
    panels: list[Panel] = field(default_factory=list)
    announcers: list[Announcer] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def wanted(self) -> bool:
        return any(d.kind in LED_KINDS or d.kind == "speaker" for d in self.devices)

    async def __aenter__(self) -> Panels:
        await self._stack.__aenter__()
        for dev in self.devices:
            if isinstance(dev, LedMax7219Device | LedSerialDevice):
                await self._add_panel(dev)
            elif isinstance(dev, SpeakerDevice):
                from displays.announcer import Announcer
                from displays.players import AplayPlayer, WavFilePlayer
                from displays.voice import make_voice

                try:
                    voice = make_voice(None)
                except VoiceError as exc:
                    self._voice_off(dev, exc)
                    continue
                player: Any = (
                    WavFilePlayer(self.output_dir / dev.id)
                    if self.emulate and self.output_dir
                    else AplayPlayer()
                )
                zones = self.cfg.scope_zones(dev.id)
                announcer = Announcer(voice, player, zone=dev.zone, zones=zones)
                self.announcers.append(await self._stack.enter_async_context(announcer))
        topics = self.session.topics
        if any(not isinstance(p.layout, WindowStrip) for p in self.panels):
            await self.session.subscribe(topics.board_state(), self._on_board)
        for window in {
            p.layout.spec.window for p in self.panels if isinstance(p.layout, WindowStrip)
        }:
            await self.session.subscribe(topics.window_state(window), self._on_window)
        await self.session.subscribe(topics.event("call"), self._on_call)
        if self.announcers:  # a call withdrawn before it was heard is not spoken
            await self.session.subscribe(topics.event("ticket"), self._on_ticket)
        # only the hall's coordinator: a presence under another id says nothing about it
        await self.session.subscribe(
            topics.status("coordinator", self.cfg.coordinator.client_id), self._on_presence
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for panel in self.panels:
            with contextlib.suppress(Exception):
                panel.sink.close()
        await self._stack.__aexit__(exc_type, exc, tb)

    def _voice_off(self, dev: SpeakerDevice, exc: VoiceError) -> None:
        """No voice is no reason to stop the boards: they still show every call. Said once
        per process in the log (a demo runs several board agents), and in the health."""
        global _VOICE_OFF_SAID
        detail = f"voice off: {exc}"
        self.health.set(dev.id, False, "voice_off", detail, quiet=True)
        if not _VOICE_OFF_SAID:
            _VOICE_OFF_SAID = True
            log.warning(
                "voice off: no espeak-ng and no voice clips, so calls are shown but "
                "not spoken (install it: sudo apt-get install espeak-ng)"
            )

    async def _add_panel(self, dev: LedDevice) -> None:
        backend: Backend | None = "emulator" if self.emulate and dev.kind == "led_max7219" else None
        spec = panel_spec(dev)
        sink = open_sink(spec, backend=backend, led_driver=self.drivers.get(dev.id))
        options: dict[str, Any] = {}
        if isinstance(sink, SerialLedSink):
            sink = await self._stack.enter_async_context(sink)
            if spec.window is not None:
                # a strip behind a serial controller: the same pixels as bits, no Pillow
                options["font"] = default_bits_font()
        self.panels.append(Panel(dev, layout_for(self.cfg, dev, **options), sink))

    def _on_board(self, incoming: Incoming) -> None:
        now = time.monotonic()
        for panel in self.panels:
            if not isinstance(panel.layout, WindowStrip):
                panel.layout.update(incoming.payload, now)
        self._wake.set()

    def _on_window(self, incoming: Incoming) -> None:
        state: m.WindowState = incoming.payload
        now = time.monotonic()
        for panel in self.panels:
            if isinstance(panel.layout, WindowStrip) and panel.layout.spec.window == state.window:
                panel.layout.update(state, now)
        self._wake.set()

    def _on_call(self, incoming: Incoming) -> None:
        event: m.CallEvent = incoming.payload
        now = time.monotonic()
        for panel in self.panels:
            panel.layout.note_call(event, now)
        for announcer in self.announcers:
            announcer.submit(event)
        self._wake.set()

    def _on_ticket(self, incoming: Incoming) -> None:
        """A voided ticket with a window is a withdrawn call (boards and strips drop it
        with the retained state they follow; the speakers' queues are told here)."""
        event: m.TicketEvent = incoming.payload
        if event.state is m.TicketState.VOIDED and event.window is not None:
            for announcer in self.announcers:
                announcer.withdraw(event.ticket, event.window)

    def _on_presence(self, incoming: Incoming) -> None:
        online = incoming.payload.state == "online"
        for panel in self.panels:
            panel.layout.set_online(online)
        self._wake.set()

    async def run(self) -> None:
        """Draw every panel whenever its frame changes; never returns."""
        while True:
            now = time.monotonic()
            local = dt.datetime.now(self.cfg.hall.tzinfo)
            wake_at = now + MAX_SLEEP_S
            for panel in self.panels:
                await self._draw(panel, now, local)
                nxt = panel.layout.next_change(now)
                if nxt is not None:
                    wake_at = min(wake_at, nxt)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, wake_at - time.monotonic())):
                    await self._wake.wait()

    async def _draw(self, panel: Panel, now: float, local: dt.datetime) -> None:
        level = DEFAULT_SCHEDULE.level_at(local)
        if level != panel.brightness:
            panel.sink.set_brightness(level)
            panel.brightness = level
        frame = panel.layout.frame_at(now)
        data = frame.tobytes()
        if data == panel.last:
            return
        panel.last = data
        try:
            panel.sink.show(frame)
        except Exception as exc:
            await self.health.update(panel.device.id, False, "display_error", str(exc))
            return
        if (
            is_emulator(panel.sink)
            and self.output_dir is not None
            and (now - panel.saved_at >= SAVE_EVERY_S)
        ):
            panel.saved_at = now
            self.output_dir.mkdir(parents=True, exist_ok=True)
            panel.sink.save_png(self.output_dir / f"{panel.device.id}.png")

    def png(self, device_id: str) -> bytes | None:
        """The emulated panel as the dashboard shows it."""
        for panel in self.panels:
            if panel.device.id == device_id and is_emulator(panel.sink):
                return panel.sink.png_bytes()
        return None
