"""A simulated RS-485 bus: several simulated devices sharing one line behind a pty.

A pty moves bytes instantly whatever the baud rate, so when ``baudrate`` is given the
bus models the wire both ways: a master's frame is acted on only once its last byte would
have arrived, a reply leaves in chunks at the speed the UART would send it (as a USB
adapter's latency timer delivers it), and the line is busy until the last byte is out.
A master that talks while a device still holds the line causes a collision: both frames
are garbled and counted, as they would be on the real bus.

Faults for tests: drop the next frame of a command to an address (a lost ACK), garble a
reply, mute a device, reboot it, unplug and replug the whole line.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self, TypeVar

from firmware_bridge.attention import AttentionRequest
from firmware_bridge.devices.call_pad import TransferTarget
from firmware_bridge.errors import FrameError
from firmware_bridge.frame import BROADCAST, Command, Frame, FrameDecoder
from firmware_bridge.payloads import PadKey

from .devices import (
    SimCallPad,
    SimDevice,
    SimIdReader,
    SimKeypad,
    SimRatingPad,
    SimScanner,
)
from .pty_port import PtyPort

__all__ = ["BusSimulator"]

D = TypeVar("D", bound=SimDevice)

log = logging.getLogger("firmware_bridge.sim.bus")


class BusSimulator:
    """``async with BusSimulator(path, [SimCallPad(1), ...]) as sim``; the link opens ``path``."""

    def __init__(
        self,
        path: str | Path,
        devices: Iterable[SimDevice] = (),
        *,
        baudrate: int | None = None,
        reply_delay: float = 0.001,
        chunk: int = 16,
    ) -> None:
        self.devices: dict[int, SimDevice] = {}
        for device in devices:
            self.add(device)
        self.baudrate = baudrate
        self.reply_delay = reply_delay
        self.chunk = chunk
        self.collisions = 0
        self.frames_heard = 0
        self._port = PtyPort(path, self._on_bytes)
        self._decoder = FrameDecoder(addresses=self.devices.__contains__, from_device=False)
        self._drops: Counter[tuple[int, Command]] = Counter()
        self._garble: Counter[tuple[int, Command | None]] = Counter()
        self._busy_until = 0.0
        self._sending: list[asyncio.TimerHandle] = []
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def path(self) -> Path:
        return self._port.path

    @property
    def drops(self) -> Counter[str]:
        return Counter({str(k): v for k, v in self._decoder.drops.items()})

    def add(self, device: SimDevice) -> SimDevice:
        if device.address in self.devices:
            raise ValueError(f"address {device.address} is taken")
        self.devices[device.address] = device
        return device

    def __getitem__(self, address: int) -> SimDevice:
        return self.devices[address]

    def device(self, address: int, kind: type[D]) -> D:
        """The simulated device at ``address``, checked to be a ``kind``."""
        device = self.devices[address]
        if not isinstance(device, kind):
            raise TypeError(f"{device!r} is not a {kind.__name__}")
        return device

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        self._port.plug()

    def close(self) -> None:
        self._cancel_sending()
        self._port.close()
        for waiter in self._waiters:
            waiter.cancel()

    # --- what a person does at the devices ---------------------------------------------

    def press(
        self, address: int, key: PadKey | str | int, target: TransferTarget | str | None = None
    ) -> int:
        """Press a key: a pad key name (``"CALL"``) on a call pad, a number on a keypad."""
        device = self.devices[address]
        if isinstance(device, SimCallPad) and not isinstance(key, int):
            seq = device.press(key, target)
        elif isinstance(device, SimKeypad):
            seq = device.press(int(key))
        else:
            raise TypeError(f"cannot press {key!r} on {device!r}")
        self._notify()
        return seq

    def rate(self, address: int, score: int) -> int:
        device = self.devices[address]
        if not isinstance(device, SimRatingPad):
            raise TypeError(f"{device!r} is not a rating pad")
        seq = device.rate(score)
        self._notify()
        return seq

    def scan(self, address: int, text: str | bytes) -> int:
        device = self.devices[address]
        if not isinstance(device, SimScanner):
            raise TypeError(f"{device!r} is not a scanner")
        seq = device.scan(text)
        self._notify()
        return seq

    def swipe_id(self, address: int, number: str) -> int:
        device = self.devices[address]
        if not isinstance(device, SimIdReader):
            raise TypeError(f"{device!r} is not an ID reader")
        seq = device.swipe(number)
        self._notify()
        return seq

    # --- faults -------------------------------------------------------------------------

    def drop_next(self, address: int, command: Command, times: int = 1) -> None:
        """The next ``times`` frames of ``command`` to ``address`` are lost on the wire."""
        self._drops[(address, command)] += times

    def clear_drops(self) -> None:
        """Frames still due to be lost get through after all: the line is clean again.

        Drops apply to frames as the bus reads them, so bytes a master wrote before this
        call but the pty had not handed over yet get through too: wait until
        ``frames_heard`` covers them first if they must stay lost.
        """
        self._drops.clear()

    def garble_next_reply(self, address: int, to: Command | None = None, times: int = 1) -> None:
        """Corrupt the device's next reply (to a ``to`` request, or to anything) on the wire."""
        self._garble[(address, to)] += times

    def inject(self, data: bytes) -> None:
        """Put raw bytes on the line, as noise or a misbehaving device would."""
        self._port.write(data)

    def unplug(self) -> None:
        self._cancel_sending()
        self._decoder.reset()
        self._port.unplug()
        self._notify()

    def replug(self) -> None:
        self._port.plug()
        self._notify()

    @property
    def plugged(self) -> bool:
        return self._port.plugged

    # --- waiting without sleeping -------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109  test-facing API: each test states its bound
        """Return once ``predicate()`` holds; it is checked after every frame the bus handles."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- the wire ------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        if now < self._busy_until:
            # The master talked over a device: both transmissions are lost.
            self.collisions += 1
            log.debug("collision: master sent %d bytes while a device held the line", len(data))
            self._cancel_sending()
            self._port.write(b"\x00")
            self._busy_until = 0.0
            self._decoder.reset()
            self._notify()
            return
        frames = self._decoder.feed(data)
        if self.baudrate and frames:
            # The pty delivered the master's bytes at once; the UART would still be receiving.
            loop = asyncio.get_running_loop()
            at = now + len(data) * 10 / self.baudrate
            self._sending.append(loop.call_at(at, self._receive, frames))
            return
        self._receive(frames)

    def _receive(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.frames_heard += 1
            self._handle(frame)
        self._notify()

    def _handle(self, frame: Frame) -> None:
        key = (frame.address, frame.command)
        if self._drops[key] > 0:
            self._drops[key] -= 1
            log.debug("dropped %r on the wire (fault injected)", frame)
            return
        if frame.address == BROADCAST and frame.command == Command.ATTENTION:
            self._answer_attention(frame)
            return
        if frame.address == BROADCAST:
            for each in self.devices.values():
                if not each.muted:
                    each.handle(frame)
            return
        device = self.devices.get(frame.address)
        if device is None or device.muted:
            return
        reply = device.handle(frame)
        if reply is not None:
            garble = False
            keys: tuple[tuple[int, Command | None], ...] = (
                (frame.address, frame.command),
                (frame.address, None),
            )
            for wanted in keys:
                if self._garble[wanted] > 0:
                    self._garble[wanted] -= 1
                    garble = True
                    break
            self._transmit(reply, garble=garble)

    def _answer_attention(self, frame: Frame) -> None:
        """Every listed device that is powered sends its slot byte, each in its own slot."""
        try:
            request = AttentionRequest.decode(frame.payload)
        except FrameError:
            return  # firmware ignores a bad broadcast
        slots: list[tuple[int, int]] = []
        for index, address in enumerate(request.addresses):
            device = self.devices.get(address)
            if device is None or device.muted:
                continue
            answer = device.attention_answer(index)
            if answer is not None:
                slots.append((request.slot_end(index), answer))
        if not slots:
            return
        loop = asyncio.get_running_loop()
        start = loop.time() + self.reply_delay
        if not self.baudrate:
            self._busy_until = start
            data = bytes(answer for _, answer in slots)
            self._sending.append(loop.call_at(start, self._port.write, data))
            return
        # handed over as a USB adapter would: up to ``chunk`` bytes, once the last is in
        char = 10 / self.baudrate
        for first in range(0, len(slots), self.chunk):
            piece = slots[first : first + self.chunk]
            data = bytes(answer for _, answer in piece)
            self._sending.append(loop.call_at(start + piece[-1][0] * char, self._port.write, data))
        self._busy_until = start + slots[-1][0] * char

    def _transmit(self, reply: Frame, *, garble: bool) -> None:
        data = bytearray(reply.encode())
        if garble:  # flip one plain byte: the frame arrives whole but fails its CRC
            flip = next(
                i
                for i in range(1, len(data) - 1)
                if data[i] not in (0x7C, 0x7D, 0x7E, 0x7F) and data[i - 1] != 0x7D
            )
            data[flip] ^= 0x01
        loop = asyncio.get_running_loop()
        start = loop.time() + self.reply_delay
        if not self.baudrate:
            self._busy_until = start
            self._sending.append(loop.call_at(start, self._port.write, bytes(data)))
            return
        char = 10 / self.baudrate
        self._busy_until = start + len(data) * char
        for offset in range(0, len(data), self.chunk):
            piece = bytes(data[offset : offset + self.chunk])
            at = start + (offset + len(piece)) * char
            self._sending.append(loop.call_at(at, self._port.write, piece))
        self._sending = [h for h in self._sending if not h.cancelled()][-256:]

    def _cancel_sending(self) -> None:
        for handle in self._sending:
            handle.cancel()
        self._sending.clear()
