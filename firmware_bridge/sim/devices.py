"""Simulated bus devices: what each device's firmware does with the master's frames.

They follow PROTOCOL.md as a firmware author would: a power-up BOOT event at seq 0, one
unacknowledged event at a time repeated with the same seq until ACKed, NACK for what the
device cannot do. Tests and the demo drive them with the methods a person would use:
press a key, rate, scan, swipe a card.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

from firmware_bridge.attention import slot_answer
from firmware_bridge.devices.call_pad import TransferTarget
from firmware_bridge.display_text import DisplayFlag, decode_display
from firmware_bridge.errors import FrameError
from firmware_bridge.frame import Command, Frame
from firmware_bridge.led_delta import LedScreen
from firmware_bridge.led_frames import Bitmap, ChunkRejected
from firmware_bridge.payloads import (
    DeviceKind,
    DeviceStatus,
    EventType,
    Identity,
    NackReason,
    PadKey,
    StatusFlag,
    join_event,
    key_event,
)

__all__ = [
    "SimCallPad",
    "SimDevice",
    "SimIdReader",
    "SimKeypad",
    "SimLedController",
    "SimRatingPad",
    "SimScanner",
]


class SimDevice:
    kind: DeviceKind = DeviceKind.CALL_PAD

    def __init__(
        self, address: int, *, model: str = "hallq-sim", firmware: tuple[int, int] = (1, 0)
    ):
        self.address = address
        self.model = model
        self.firmware = firmware
        self.boot_id = 0
        self.flags = StatusFlag(0)
        self.muted = False  # powered off / wire cut: hears nothing, says nothing
        self.attention = True  # False: firmware from before ATTENTION, silent in its slot
        self.transmissions: Counter[int] = Counter()  # event seq -> times sent
        self.acked: list[int] = []
        self.received: Counter[Command] = Counter()
        self._queue: deque[tuple[int, bytes]] = deque()
        self._pending: tuple[int, bytes] | None = None
        self._seq = 0
        self._booted_at = time.monotonic()
        self.reboot()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self.address})"

    @property
    def identity(self) -> Identity:
        return Identity(self.kind, self.firmware, self.boot_id, self.model)

    @property
    def unacked(self) -> int:
        """Events not yet acknowledged, the one being offered included."""
        return len(self._queue) + (self._pending is not None)

    def reboot(self) -> None:
        """Power-cycle: queued events are lost, seq restarts at 0 with a BOOT event."""
        self.boot_id = (self.boot_id + 1) & 0xFFFF
        self._queue.clear()
        self._pending = None
        self._seq = 0
        self._booted_at = time.monotonic()
        self.queue_event(join_event(EventType.BOOT, self.identity.encode()))

    def queue_event(self, payload: bytes) -> int:
        """Queue an EVENT payload as the firmware would; returns the seq it will carry."""
        seq = self._seq
        self._seq = self._seq % 255 + 1  # 1..255 after the BOOT event's 0
        self._queue.append((seq, payload))
        return seq

    @property
    def has_event(self) -> bool:
        """What its ATTENTION slot says: an event the next POLL would get."""
        return self._pending is not None or bool(self._queue)

    def attention_answer(self, index: int) -> int | None:
        """The byte it sends in slot ``index`` of an ATTENTION (None: firmware without it)."""
        self.received[Command.ATTENTION] += 1
        return slot_answer(index, self.has_event) if self.attention else None

    def handle(self, frame: Frame) -> Frame | None:
        """The reply to one frame addressed to this device (None for ACKs and broadcasts)."""
        self.received[frame.command] += 1
        reply = self._reply(frame)
        return None if frame.address == 0 else reply

    def _reply(self, frame: Frame) -> Frame | None:
        match frame.command:
            case Command.POLL:
                if self._pending is None and self._queue:
                    self._pending = self._queue.popleft()
                if self._pending is None:
                    return self._answer(Command.ACK, frame.seq)
                seq, payload = self._pending
                self.transmissions[seq] += 1
                return self._answer(Command.EVENT, seq, payload)
            case Command.ACK:
                if self._pending is not None and self._pending[0] == frame.seq:
                    self.acked.append(frame.seq)
                    self._pending = None
                return None
            case Command.HELLO:
                return self._answer(Command.HELLO, frame.seq, self.identity.encode())
            case Command.STATUS:
                uptime = int(time.monotonic() - self._booted_at)
                status = DeviceStatus(self.flags, uptime, 0)
                return self._answer(Command.STATUS, frame.seq, status.encode())
            case Command.DISPLAY:
                return self.on_display(frame)
            case Command.LED_FRAME:
                return self.on_led_frame(frame)
            case Command.LED_DELTA:
                return self.on_led_delta(frame)
        return self._nack(frame.seq, NackReason.UNSUPPORTED)

    def on_display(self, frame: Frame) -> Frame:
        return self._nack(frame.seq, NackReason.UNSUPPORTED)

    def on_led_frame(self, frame: Frame) -> Frame:
        return self._nack(frame.seq, NackReason.UNSUPPORTED)

    def on_led_delta(self, frame: Frame) -> Frame:
        return self._nack(frame.seq, NackReason.UNSUPPORTED)

    def _answer(self, command: Command, seq: int, payload: bytes = b"") -> Frame:
        return Frame(self.address, command, seq, payload, from_device=True)

    def _nack(self, seq: int, reason: NackReason) -> Frame:
        return self._answer(Command.NACK, seq, bytes((reason,)))


class SimCallPad(SimDevice):
    kind = DeviceKind.CALL_PAD

    def __init__(
        self, address: int, *, model: str = "hallq-sim", firmware: tuple[int, int] = (1, 0)
    ) -> None:
        super().__init__(address, model=model, firmware=firmware)
        self.displays: list[tuple[str, DisplayFlag]] = []

    @property
    def display(self) -> str | None:
        """What the pad shows now: nothing after a power-cycle until it is told again."""
        return None if self.blank or not self.displays else self.displays[-1][0]

    def reboot(self) -> None:
        super().reboot()
        self.blank = True

    def press(self, key: PadKey | str, target: TransferTarget | str | None = None) -> int:
        code = key if isinstance(key, PadKey) else PadKey[key.upper()]
        argument = target.encode() if isinstance(target, TransferTarget) else (target or "")
        return self.queue_event(key_event(code, argument))

    def on_display(self, frame: Frame) -> Frame:
        try:
            text, flags = decode_display(frame.payload)
        except FrameError:
            return self._nack(frame.seq, NackReason.BAD_PAYLOAD)
        if self.blank or not self.displays or self.displays[-1] != (text, flags):
            self.displays.append((text, flags))  # (a resend to a lit pad shows nothing new)
        self.blank = False
        return self._answer(Command.ACK, frame.seq)


class SimRatingPad(SimDevice):
    kind = DeviceKind.RATING_PAD

    def rate(self, score: int) -> int:
        return self.queue_event(join_event(EventType.RATING, bytes((score,))))


class SimKeypad(SimDevice):
    kind = DeviceKind.KEYPAD

    def press(self, index: int) -> int:
        return self.queue_event(key_event(index))


class SimScanner(SimDevice):
    kind = DeviceKind.SCANNER

    def scan(self, text: str | bytes) -> int:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return self.queue_event(join_event(EventType.SCAN, data + b"\r\n"))


class SimIdReader(SimDevice):
    kind = DeviceKind.ID_READER

    def swipe(self, number: str) -> int:
        return self.queue_event(join_event(EventType.ID_CARD, number.encode("ascii")))


class SimLedController(SimDevice):
    kind = DeviceKind.LED_CONTROLLER

    def __init__(
        self, address: int, *, model: str = "hallq-sim", firmware: tuple[int, int] = (1, 0)
    ) -> None:
        super().__init__(address, model=model, firmware=firmware)
        self.frames: list[Bitmap] = []
        self.deltas = True  # False: firmware from before LED_DELTA, which NACKs it UNSUPPORTED
        self.screen = LedScreen()

    @property
    def shown(self) -> Bitmap | None:
        """What the panel shows now (dark after a reboot until a whole image arrives)."""
        return self.screen.shown

    def reboot(self) -> None:
        super().reboot()
        self.screen = LedScreen()

    def on_led_frame(self, frame: Frame) -> Frame:
        return self._take(frame, self.screen.feed_frame)

    def on_led_delta(self, frame: Frame) -> Frame:
        if not self.deltas:
            return self._nack(frame.seq, NackReason.UNSUPPORTED)
        return self._take(frame, self.screen.feed_delta)

    def _take(self, frame: Frame, feed: Callable[[bytes], Bitmap | None]) -> Frame:
        try:
            image = feed(frame.payload)
        except ChunkRejected as exc:
            return self._nack(frame.seq, exc.reason)
        if image is not None:
            self.frames.append(image)
        return self._answer(Command.ACK, frame.seq)
