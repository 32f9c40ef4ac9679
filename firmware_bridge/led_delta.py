"""LED_DELTA: only the rows that changed, run-length packed, against the controller's image.

A call changes one line of a zone board; sending the whole 256x32 image again costs six
acknowledged frames, over a second at 9600 baud. The controller keeps the image it shows,
so the master sends the changed row ranges, PackBits-style run-length coded (blank rows and
the gaps between glyphs are long runs of equal bytes). A delta names the image it applies
to; a controller that does not hold that image (it rebooted, or a transfer broke) refuses it
with OUT_OF_ORDER and the master resynchronises with a whole LED_FRAME image.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import FrameError
from firmware_bridge.frame import MAX_PAYLOAD
from firmware_bridge.led_frames import Bitmap, ChunkRejected, LedAssembler, LedChunk
from firmware_bridge.payloads import NackReason

__all__ = ["DELTA_LAST", "LedScreen", "led_deltas", "rle_decode", "rle_encode"]

DELTA_LAST = 0x01  # FLAGS: the last delta of this image; show it now
_HEADER = 3  # base id, frame id, flags
_RECORD = 3  # first row (2 LE), row count (1)
_MAX_LITERAL = 128
_MIN_RUN, _MAX_RUN = 3, 130


def rle_encode(data: bytes) -> bytes:
    """PackBits-like, so a controller decodes it in a few lines of C (PROTOCOL.md, LED_DELTA)."""
    out = bytearray()
    literal_start = i = 0
    n = len(data)

    def flush_literal(end: int) -> None:
        for start in range(literal_start, end, _MAX_LITERAL):
            piece = data[start : min(end, start + _MAX_LITERAL)]
            out.append(len(piece) - 1)
            out.extend(piece)

    while i < n:
        run = 1
        while i + run < n and run < _MAX_RUN and data[i + run] == data[i]:
            run += 1
        if run >= _MIN_RUN:
            flush_literal(i)
            out += bytes((0x80 + run - _MIN_RUN, data[i]))
            i += run
            literal_start = i
        else:
            i += run
    flush_literal(n)
    return bytes(out)


def rle_decode(data: bytes, size: int, start: int = 0) -> tuple[bytes, int]:
    """``size`` bytes from ``data[start:]``, and where the next record starts."""
    out = bytearray()
    i = start
    while len(out) < size:
        if i >= len(data):
            raise FrameError(f"run-length data ends after {len(out)} of {size} bytes")
        control = data[i]
        if control < 0x80:
            piece = data[i + 1 : i + 2 + control]
            if len(piece) != control + 1:
                raise FrameError("run-length literal cut short")
            out.extend(piece)
            i += 2 + control
        else:
            if i + 1 >= len(data):
                raise FrameError("run-length repeat without its byte")
            out += bytes((data[i + 1],)) * (control - 0x80 + _MIN_RUN)
            i += 2
    if len(out) != size:
        raise FrameError(f"run-length data overruns its rows ({len(out)} bytes for {size})")
    return bytes(out), i


@dataclass(frozen=True, slots=True)
class _Record:
    row: int
    count: int
    packed: bytes

    def encode(self) -> bytes:
        return self.row.to_bytes(2, "little") + bytes((self.count,)) + self.packed


def _changed_ranges(old: Bitmap, new: Bitmap) -> list[tuple[int, int]]:
    stride = new.stride
    ranges: list[tuple[int, int]] = []
    for y in range(new.height):
        at = y * stride
        if old.rows[at : at + stride] != new.rows[at : at + stride]:
            if ranges and ranges[-1][1] == y:
                ranges[-1] = (ranges[-1][0], y + 1)
            else:
                ranges.append((y, y + 1))
    return ranges


def _records(new: Bitmap, first: int, end: int, room: int) -> list[_Record]:
    """Rows ``first..end`` as records that each fit ``room`` bytes, as few as greed finds."""
    stride = new.stride
    records: list[_Record] = []
    y = first
    while y < end:
        count = min(end - y, 255)
        while True:
            packed = rle_encode(new.rows[y * stride : (y + count) * stride])
            if _RECORD + len(packed) <= room or count == 1:
                break
            count = max(1, count * room // (_RECORD + len(packed)) if count > 1 else 1)
        if _RECORD + len(packed) > room:
            raise FrameError(f"one row of {new} does not fit a delta frame")
        records.append(_Record(y, count, packed))
        y += count
    return records


def led_deltas(
    old: Bitmap, new: Bitmap, base_id: int, frame_id: int, max_payload: int = MAX_PAYLOAD
) -> list[bytes]:
    """The LED_DELTA payloads turning ``old`` (shown as ``base_id``) into ``new`` (``frame_id``).

    When nothing changed, one payload without records: it shows the base image again under
    ``frame_id`` (a blinking call going back on, from the controller's previous image).
    Records never span two frames, so each payload is applied
    on its own and a resent one (its ACK lost) writes the same bytes again. Payloads are at
    most ``max_payload`` bytes (shorter frames let a slow line ask its pads in between).
    """
    limit = min(max_payload, MAX_PAYLOAD)
    if (old.width, old.height) != (new.width, new.height):
        raise FrameError(f"a delta cannot change the size ({old} to {new})")
    if base_id == frame_id or not (0 <= base_id <= 0xFF and 0 <= frame_id <= 0xFF):
        raise FrameError(f"delta ids must differ and be 0..255, got {base_id}, {frame_id}")
    room = limit - _HEADER
    payloads: list[bytearray] = []
    for first, end in _changed_ranges(old, new):
        for record in _records(new, first, end, room):
            data = record.encode()
            if not payloads or len(payloads[-1]) + len(data) > limit:
                payloads.append(bytearray((base_id, frame_id, 0)))
            payloads[-1] += data
    if not payloads:
        payloads.append(bytearray((base_id, frame_id, 0)))
    payloads[-1][2] |= DELTA_LAST
    return [bytes(p) for p in payloads]


class LedScreen:
    """What an LED controller's firmware keeps and does; the simulator runs it.

    It holds the image it shows and its frame id, and the image it showed before that (so
    a blink back on is a delta of no rows). LED_FRAME chunks build a whole new image
    (``LedAssembler``); LED_DELTA frames patch a copy of the shown or the previous image
    and show it on the one flagged last, so the panel never shows half an update.
    """

    def __init__(self, *, keep_previous: bool = True) -> None:
        self.keep_previous = keep_previous  # False: firmware that patches only its current image
        self.shown: Bitmap | None = None
        self.shown_id: int | None = None
        self.previous: Bitmap | None = None
        self.previous_id: int | None = None
        self._assembler = LedAssembler()
        self._work: bytearray | None = None
        self._work_ids: tuple[int, int] | None = None

    def feed_frame(self, payload: bytes) -> Bitmap | None:
        image = self._assembler.feed(payload)
        self._work = self._work_ids = None
        if image is not None:
            self._show(image, LedChunk.decode(payload).frame_id)
        return image

    def _show(self, image: Bitmap, frame_id: int) -> None:
        if self.keep_previous:
            self.previous, self.previous_id = self.shown, self.shown_id
        self.shown, self.shown_id = image, frame_id

    def feed_delta(self, payload: bytes) -> Bitmap | None:
        if len(payload) < _HEADER:
            raise ChunkRejected(NackReason.BAD_PAYLOAD, "LED_DELTA payload under 3 bytes")
        base_id, frame_id, flags = payload[0], payload[1], payload[2]
        shown = self.shown
        if shown is None:
            raise ChunkRejected(NackReason.OUT_OF_ORDER, "no image to apply a delta to")
        if self._work is not None and self._work_ids == (base_id, frame_id):
            work = self._work
        elif base_id == self.shown_id and frame_id != base_id:
            work = bytearray(shown.rows)
        elif frame_id == self.shown_id and self._work is None:
            return None  # the last delta again: its ACK was lost, the image is up
        elif (
            base_id == self.previous_id
            and self.previous is not None
            and frame_id not in (base_id, self.shown_id)
            and (self.previous.width, self.previous.height) == (shown.width, shown.height)
        ):
            work = bytearray(self.previous.rows)
        else:
            raise ChunkRejected(
                NackReason.OUT_OF_ORDER,
                f"delta {base_id}->{frame_id} does not apply to image {self.shown_id}",
            )
        stride = shown.stride
        patched = bytearray(work)
        at = _HEADER
        try:
            while at < len(payload):
                if at + _RECORD > len(payload):
                    raise FrameError("record header cut short")
                row = int.from_bytes(payload[at : at + 2], "little")
                count = payload[at + 2]
                if count == 0 or row + count > shown.height:
                    raise FrameError(f"rows {row}..{row + count} outside the image")
                rows, at = rle_decode(payload, count * stride, at + _RECORD)
                patched[row * stride : (row + count) * stride] = rows
        except FrameError as exc:
            raise ChunkRejected(NackReason.BAD_PAYLOAD, str(exc)) from None
        if flags & DELTA_LAST:
            self._work = self._work_ids = None
            self._show(Bitmap(shown.width, shown.height, bytes(patched)), frame_id)
            return self.shown
        self._work, self._work_ids = patched, (base_id, frame_id)
        return None
