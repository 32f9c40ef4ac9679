"""The RS-485 frame codec: exact bytes, round trips, every way a frame is dropped, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.attention import (
    ATTENTION_MAX,
    AttentionAnswers,
    AttentionRequest,
    slot_answer,
)
from firmware_bridge.crc import crc16_modbus
from firmware_bridge.errors import FrameError
from firmware_bridge.frame import (
    EOF,
    ESC,
    MAX_BODY,
    MAX_PAYLOAD,
    SOF,
    Command,
    DropReason,
    Frame,
    FrameDecoder,
    encode,
)
from firmware_bridge.payloads import PadKey, key_event

# (command, sent by a device?) for every legal direction of every command.
LEGAL = [
    (Command.POLL, False),
    (Command.EVENT, True),
    (Command.ACK, False),
    (Command.ACK, True),
    (Command.NACK, True),
    (Command.HELLO, False),
    (Command.HELLO, True),
    (Command.STATUS, False),
    (Command.STATUS, True),
    (Command.ATTENTION, False),
    (Command.DISPLAY, False),
    (Command.LED_FRAME, False),
    (Command.LED_DELTA, False),
]


def raw_frame(
    addr: int,
    cmd: int,
    seq: int,
    payload: bytes,
    *,
    length: int | None = None,
    crc: int | None = None,
) -> bytes:
    """A frame built by hand, so a test can make it wrong in exactly one way."""
    body = bytes((addr, cmd, seq, len(payload) if length is None else length)) + payload
    body += (crc16_modbus(body) if crc is None else crc).to_bytes(2, "little")
    stuffed = bytearray()
    for b in body:
        stuffed += bytes((ESC, b ^ 0x20)) if b in (SOF, EOF, ESC) else bytes((b,))
    return bytes((SOF,)) + bytes(stuffed) + bytes((EOF,))


def sniffer() -> FrameDecoder:
    return FrameDecoder(addresses=None, from_device=None)


# --- exact bytes ---------------------------------------------------------------------------


def test_crc16_modbus_check_values() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37
    assert crc16_modbus(bytes.fromhex("01030000000A")).to_bytes(2, "little") == b"\xc5\xcd"


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (Frame(1, Command.POLL, 0x10), "7e 01 01 10 00 5d d8 7f"),
        (Frame(1, Command.ACK, 0x10, from_device=True), "7e 01 83 10 00 fd f0 7f"),
        (
            Frame(1, Command.EVENT, 5, key_event(PadKey.CALL), from_device=True),
            "7e 01 82 05 02 01 01 18 88 7f",
        ),
        (Frame(1, Command.ACK, 5), "7e 01 03 05 00 f2 88 7f"),
        (Frame(0x7E, Command.POLL, 0x7D), "7e 7d 5e 01 7d 5d 00 68 9c 7f"),
        (
            Frame(0, Command.ATTENTION, 0x21, bytes((2, 1, 2, 3, 11))),
            "7e 00 07 21 05 02 01 02 03 0b e2 8a 7f",
        ),
    ],
)
def test_wire_bytes_match_protocol_md(frame: Frame, wire: str) -> None:
    assert encode(frame) == bytes.fromhex(wire)
    assert sniffer().feed(bytes.fromhex(wire)) == [frame]


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize(("command", "from_device"), LEGAL)
def test_every_command_round_trips(command: Command, from_device: bool) -> None:
    payload = bytes(range(0, 200, 3))
    frame = Frame(17, command, 200, payload, from_device)
    assert sniffer().feed(encode(frame)) == [frame]


def test_special_bytes_inside_are_stuffed_and_restored() -> None:
    payload = bytes([SOF, EOF, ESC, SOF, SOF, 0x5E, 0x5D]) * 20
    frame = Frame(SOF, Command.DISPLAY, EOF, payload)
    wire = encode(frame)
    inner = wire[1:-1]
    assert SOF not in inner
    assert EOF not in inner
    assert sniffer().feed(wire) == [frame]


def test_frames_split_anywhere_across_reads() -> None:
    frames = [Frame(a, Command.EVENT, a, bytes([a, SOF, EOF]), True) for a in range(1, 6)]
    wire = b"".join(map(encode, frames))
    decoder = sniffer()
    out: list[Frame] = []
    for i in range(len(wire)):
        out += decoder.feed(wire[i : i + 1])
    assert out == frames
    assert not decoder.drops


def test_back_to_back_sofs_are_idle_fill() -> None:
    frame = Frame(3, Command.POLL, 1)
    decoder = sniffer()
    assert decoder.feed(bytes([SOF, SOF, SOF]) + encode(frame)) == [frame]
    assert not decoder.drops


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Frame(248, Command.POLL, 0),
        lambda: Frame(1, Command.POLL, 256),
        lambda: Frame(1, Command.DISPLAY, 0, bytes(MAX_PAYLOAD + 1)),
        lambda: Frame(0, Command.ACK, 0, from_device=True),
        lambda: Frame(1, Command.POLL, 0, from_device=True),
        lambda: Frame(1, Command.EVENT, 0),
    ],
)
def test_frames_the_protocol_forbids_cannot_be_built(bad: object) -> None:
    with pytest.raises(FrameError):
        bad()  # type: ignore[operator]


def test_repr_shows_payload_length_not_content() -> None:
    frame = Frame(5, Command.EVENT, 1, b"\x03440103199001011236", from_device=True)
    assert "440103" not in repr(frame)
    assert "19 bytes" in repr(frame)


# --- every corruption, counted ------------------------------------------------------------


GOOD = Frame(2, Command.EVENT, 9, b"\x01\x07", from_device=True)


def check(data: bytes, reason: DropReason, *, decoder: FrameDecoder | None = None) -> None:
    """The bad part is dropped for ``reason`` and a good frame right after it still decodes."""
    decoder = decoder or sniffer()
    assert decoder.feed(data + encode(GOOD)) == [GOOD]
    assert decoder.drops == {reason: 1}


def test_bad_crc() -> None:
    wire = bytearray(encode(Frame(2, Command.EVENT, 9, b"\x01\x02", from_device=True)))
    wire[6] ^= 0x01  # a payload byte, not special either way
    check(bytes(wire), DropReason.BAD_CRC)


def test_truncated_by_next_sof() -> None:
    check(encode(GOOD)[:-3], DropReason.TRUNCATED)


def test_a_lone_escape_cut_by_the_next_sof_is_counted() -> None:
    check(bytes((SOF, ESC)), DropReason.TRUNCATED)  # found by tests/test_fuzz_serial.py


def test_truncated_shorter_than_len() -> None:
    check(raw_frame(2, 0x82, 1, b"\x01\x02", length=5), DropReason.TRUNCATED)


def test_truncated_shorter_than_a_header() -> None:
    check(bytes([SOF, 1, 2, EOF]), DropReason.TRUNCATED)


def test_oversize_len() -> None:
    check(raw_frame(2, 0x82, 1, bytes(201)), DropReason.OVERSIZE)


def test_oversize_without_eof_keeps_the_buffer_bounded() -> None:
    decoder = sniffer()
    decoder.feed(bytes([SOF]) + bytes(range(1, 100)) * 50)
    assert decoder.buffered <= MAX_BODY
    assert decoder.drops == {DropReason.OVERSIZE: 1}
    assert decoder.feed(encode(GOOD)) == [GOOD]


def test_more_bytes_than_len() -> None:
    check(raw_frame(2, 0x82, 1, b"\x01\x02", length=1), DropReason.BAD_LENGTH)


def test_bad_escape() -> None:
    wire = encode(GOOD)
    check(wire[:3] + bytes([ESC, 0x41]) + wire[3:], DropReason.BAD_ESCAPE)


def test_escape_right_before_eof() -> None:
    wire = encode(GOOD)
    check(wire[:-1] + bytes([ESC, EOF]), DropReason.BAD_ESCAPE)


def test_unknown_command() -> None:
    check(raw_frame(2, 0xA0, 1, b""), DropReason.UNKNOWN_COMMAND)


def test_command_in_a_direction_it_never_travels() -> None:
    check(raw_frame(2, 0x81, 1, b""), DropReason.UNKNOWN_COMMAND)  # a device "polling"


def test_misaddressed_on_the_master() -> None:
    master = FrameDecoder(addresses={2})
    check(
        encode(Frame(3, Command.ACK, 1, from_device=True)), DropReason.MISADDRESSED, decoder=master
    )


def test_address_out_of_range() -> None:
    check(raw_frame(250, 0x83, 1, b""), DropReason.MISADDRESSED)


def test_device_accepts_own_address_and_broadcast_only() -> None:
    device = FrameDecoder(addresses={4}, from_device=False)
    poll_4, poll_5 = Frame(4, Command.POLL, 1), Frame(5, Command.POLL, 2)
    broadcast = Frame(0, Command.DISPLAY, 3, b"\x00hi")
    assert device.feed(encode(poll_4) + encode(poll_5) + encode(broadcast)) == [poll_4, broadcast]
    assert device.drops == {DropReason.MISADDRESSED: 1}


def test_master_drops_its_own_echo() -> None:
    check(encode(Frame(2, Command.POLL, 1)), DropReason.WRONG_DIRECTION, decoder=FrameDecoder())


def test_garbage_between_frames() -> None:
    decoder = sniffer()
    one = Frame(1, Command.ACK, 1, from_device=True)
    assert decoder.feed(encode(one) + b"line noise \x00\xff" + encode(GOOD)) == [one, GOOD]
    assert decoder.drops == {DropReason.GARBAGE: 1}
    assert decoder.garbage_bytes == len(b"line noise \x00\xff")


# --- fuzzing -----------------------------------------------------------------------------

frames_st = st.builds(
    Frame,
    address=st.integers(1, 247),
    command=st.just(Command.EVENT),
    seq=st.integers(0, 255),
    payload=st.binary(max_size=40),
    from_device=st.just(True),
)
chunking = st.lists(st.integers(1, 64), min_size=1, max_size=20)


def feed_in_chunks(decoder: FrameDecoder, data: bytes, sizes: list[int]) -> list[Frame]:
    out: list[Frame] = []
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out += decoder.feed(data[i : i + n])
        assert decoder.buffered <= MAX_BODY
        i += n
        k += 1
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), sizes=chunking)
def test_fuzz_random_bytes_never_raise_and_stay_bounded(data: bytes, sizes: list[int]) -> None:
    decoder = FrameDecoder(addresses={1, 2, 3})
    feed_in_chunks(decoder, data, sizes)
    assert decoder.buffered <= MAX_BODY


@settings(max_examples=200, deadline=None)
@given(
    garbage=st.binary(max_size=500),
    frames=st.lists(frames_st, min_size=1, max_size=5),
    sizes=chunking,
)
def test_fuzz_valid_frames_after_garbage_are_found(
    garbage: bytes, frames: list[Frame], sizes: list[int]
) -> None:
    decoder = sniffer()
    out = feed_in_chunks(decoder, garbage + b"".join(map(encode, frames)), sizes)
    assert out[-len(frames) :] == frames


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[bytes, list[Frame]]:
    """Valid frames, some mutated (bytes flipped, inserted, deleted); returns the untouched ones."""
    frames = draw(st.lists(frames_st, min_size=1, max_size=6))
    out = bytearray()
    intact: list[Frame] = []
    for frame in frames:
        wire = bytearray(encode(frame))
        if draw(st.booleans()):
            for _ in range(draw(st.integers(1, 4))):
                at = draw(st.integers(0, len(wire) - 1))
                kind = draw(st.sampled_from(["flip", "insert", "delete"]))
                byte = draw(st.sampled_from([SOF, EOF, ESC, 0x00, 0xFF, 0x42]))
                if kind == "flip":
                    wire[at] ^= draw(st.integers(1, 255))
                elif kind == "insert":
                    wire.insert(at, byte)
                elif len(wire) > 1:
                    del wire[at]
            if bytes(wire) == encode(frame):
                intact.append(frame)
        else:
            intact.append(frame)
        out += wire
    return bytes(out), intact


@settings(max_examples=300, deadline=None)
@given(stream=mutated_streams(), sizes=chunking)
def test_fuzz_mutated_streams_lose_only_mutated_frames(
    stream: tuple[bytes, list[Frame]], sizes: list[int]
) -> None:
    data, intact = stream
    out = feed_in_chunks(sniffer(), data, sizes)
    it = iter(out)
    assert all(any(frame == got for got in it) for frame in intact), "an intact frame was lost"


# --- ATTENTION -----------------------------------------------------------------------------


def test_attention_answers_name_who_to_poll_and_ignore_noise() -> None:
    request = AttentionRequest(2, (1, 2, 3, 11))
    assert request.encode() == bytes((2, 1, 2, 3, 11))
    assert AttentionRequest.decode(request.encode()) == request
    assert [request.slot_end(i) for i in range(4)] == [2, 4, 6, 8]
    answers = AttentionAnswers(request)
    # slot 0 nothing, slot 1 pending, slot 3 nothing; then noise: an index past the list,
    # framing bytes, bit 6 set
    answers.feed(bytes((0x00, 0x81, 0x03, 0x84, 0x7D, 0x7E, 0x7F, 0x41)))
    assert answers.noise == 5
    assert answers.answers == {1: False, 2: True, 11: False}
    assert answers.to_poll() == [2, 3]  # 3 said nothing at all: poll it directly
    assert answers.silent() == [3]
    assert not answers.complete


def test_slot_answers_are_never_framing_bytes() -> None:
    every = {slot_answer(i, p) for i in range(ATTENTION_MAX) for p in (False, True)}
    assert len(every) == 2 * ATTENTION_MAX
    assert not every & {SOF, EOF, 0x7D}


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x02", b"\x01\x01", b"\x02\x00", b"\x02\x01\x01", bytes((2, *range(1, 66)))],
)
def test_bad_attention_requests_are_refused(payload: bytes) -> None:
    with pytest.raises(FrameError):
        AttentionRequest.decode(payload)
