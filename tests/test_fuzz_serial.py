"""Fuzz of the RS-485 side: mutated and random frames through the streaming decoder, and
through a SerialLink on a real pty with simulated devices on the other end.

The decoder suite is the volume run (a seeded generator, not Hypothesis: a million frames
must fit in a couple of minutes). Each mutant is followed by a valid frame, which must come
out intact whatever the mutant left behind; a mutant made wrong in one known way must be
dropped for exactly that reason, once; any other mutant must be decoded or counted. The
link suite sends mutants from the device side of a pty while a person keeps pressing keys:
every press must arrive once, the link stay up, and its drop counters agree, reason by
reason, with a decoder fed the same bytes.

Counts: see tests/fuzzing.py (``HALLQ_FUZZ_SCALE=long`` for the issue's million frames).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from firmware_bridge import DeviceState, DropReason, LinkTiming, SerialLink
from firmware_bridge.crc import crc16_modbus
from firmware_bridge.devices import CallPad, PadKeyPress
from firmware_bridge.frame import (
    EOF,
    ESC,
    MAX_BODY,
    MAX_PAYLOAD,
    SOF,
    Command,
    Frame,
    FrameDecoder,
)
from firmware_bridge.sim import BusSimulator, SimCallPad

from .fuzzing import TIMEOUT, count, report, rng

pytestmark = TIMEOUT

ACCEPT = frozenset(range(1, 21))  # the addresses the master under test polls
DEVICE_CMDS = [Command.EVENT, Command.ACK, Command.NACK, Command.HELLO, Command.STATUS]
MASTER_ONLY = [Command.POLL, Command.DISPLAY, Command.LED_FRAME]
SPECIAL = (SOF, EOF, ESC)
UNKNOWN_CMDS = [c for c in range(0x80) if c not in {int(x) for x in Command}]
STUFF_TO_PLAIN = bytes.maketrans(bytes(SPECIAL), b"\x00\x01\x02")
BAD_FOLLOWERS = [b for b in range(256) if b not in (0x5D, 0x5E, 0x5F, *SPECIAL)]


def body_of(
    addr: int, cmd: int, seq: int, payload: bytes, *, length: int | None = None, crc_xor: int = 0
) -> bytes:
    body = bytes((addr, cmd, seq, len(payload) if length is None else length)) + payload
    return body + (crc16_modbus(body) ^ crc_xor).to_bytes(2, "little")


def wire(body: bytes) -> bytes:
    out = bytearray((SOF,))
    for b in body:
        out += bytes((ESC, b ^ 0x20)) if b in SPECIAL else bytes((b,))
    out.append(EOF)
    return bytes(out)


def random_payload(r: random.Random) -> bytes:
    n = r.choice((0, 1, 2, 5, 8, 16, 40, r.randrange(MAX_PAYLOAD + 1)))
    data = bytearray(r.randbytes(n))
    for _ in range(n // 8):  # more of the bytes that must be stuffed than chance gives
        data[r.randrange(n)] = r.choice(SPECIAL)
    return bytes(data)


def valid_device_frame(r: random.Random) -> Frame:
    return Frame(
        r.choice(sorted(ACCEPT)),
        r.choice(DEVICE_CMDS),
        r.randrange(256),
        random_payload(r),
        from_device=True,
    )


# --- mutations: (bytes, the one drop reason they must cause, or None when any outcome
#     is fine as long as it is decoded or counted) --------------------------------------

Mutant = tuple[bytes, DropReason | None]


def m_bad_crc(r: random.Random, f: Frame) -> Mutant:
    cmd = f.command | 0x80
    return wire(body_of(f.address, cmd, f.seq, f.payload, crc_xor=r.randrange(1, 0x10000))), (
        DropReason.BAD_CRC
    )


def m_oversize_len(r: random.Random, f: Frame) -> Mutant:
    body = body_of(
        f.address, f.command | 0x80, f.seq, f.payload, length=r.randrange(MAX_PAYLOAD + 1, 256)
    )
    return wire(body), DropReason.OVERSIZE


def m_runaway(r: random.Random, f: Frame) -> Mutant:
    """A frame that never ends: more body bytes than any frame may have, then its EOF."""
    junk = r.randbytes(MAX_BODY + 1 + r.randrange(64)).translate(STUFF_TO_PLAIN)
    return bytes((SOF,)) + junk + bytes((EOF,)), DropReason.OVERSIZE


def m_len_short(r: random.Random, f: Frame) -> Mutant:
    if len(f.payload) == MAX_PAYLOAD:  # a full payload cannot claim more
        return m_bad_crc(r, f)
    length = r.randrange(len(f.payload) + 1, MAX_PAYLOAD + 1)
    return wire(body_of(f.address, f.command | 0x80, f.seq, f.payload, length=length)), (
        DropReason.TRUNCATED
    )


def m_len_long(r: random.Random, f: Frame) -> Mutant:
    if not f.payload:
        return m_bad_crc(r, f)
    length = r.randrange(len(f.payload))
    return wire(body_of(f.address, f.command | 0x80, f.seq, f.payload, length=length)), (
        DropReason.BAD_LENGTH
    )


def m_cut(r: random.Random, f: Frame) -> Mutant:
    data = f.encode()
    return data[: r.randrange(3, len(data) - 1)], DropReason.TRUNCATED


def m_lone_escape(r: random.Random, f: Frame) -> Mutant:
    """A frame that got as far as one escape byte: the next start must count it."""
    return bytes((SOF, ESC)), DropReason.TRUNCATED


def m_bad_escape(r: random.Random, f: Frame) -> Mutant:
    data = f.encode()
    at = r.randrange(1, len(data) - 1)
    follower = r.choice(BAD_FOLLOWERS)
    return data[:at] + bytes((ESC, follower)) + data[at:], DropReason.BAD_ESCAPE


def m_escape_at_eof(r: random.Random, f: Frame) -> Mutant:
    data = f.encode()
    return data[:-1] + bytes((ESC, EOF)), DropReason.BAD_ESCAPE


def m_unknown_command(r: random.Random, f: Frame) -> Mutant:
    cmd = r.choice(UNKNOWN_CMDS) | 0x80
    return wire(body_of(f.address, cmd, f.seq, f.payload)), DropReason.UNKNOWN_COMMAND


def m_master_command_from_device(r: random.Random, f: Frame) -> Mutant:
    cmd = r.choice(MASTER_ONLY) | 0x80
    return wire(body_of(f.address, cmd, f.seq, f.payload)), DropReason.UNKNOWN_COMMAND


def m_echo(r: random.Random, f: Frame) -> Mutant:
    """A master frame (the master hearing its own echo, or another master)."""
    cmd = r.choice([Command.POLL, Command.ACK, Command.HELLO, Command.STATUS])
    return wire(body_of(f.address, cmd, f.seq, f.payload)), DropReason.WRONG_DIRECTION


def m_misaddressed(r: random.Random, f: Frame) -> Mutant:
    addr = r.choice((0, r.randrange(21, 248), r.randrange(248, 256)))
    return wire(body_of(addr, f.command | 0x80, f.seq, f.payload)), DropReason.MISADDRESSED


def m_garbage(r: random.Random, f: Frame) -> Mutant:
    """Line noise between frames: anything but a start byte."""
    noise = bytearray(r.randbytes(r.randrange(1, 64)).replace(b"\x7e", b"\x7f"))
    return bytes(noise), DropReason.GARBAGE


def m_bitflips(r: random.Random, f: Frame) -> Mutant:
    data = bytearray(f.encode())
    for _ in range(r.randrange(1, 5)):
        data[r.randrange(len(data))] ^= 1 << r.randrange(8)
    return bytes(data), None


def m_byte_edits(r: random.Random, f: Frame) -> Mutant:
    data = bytearray(f.encode())
    for _ in range(r.randrange(1, 4)):
        at = r.randrange(len(data) + 1)
        what = r.random()
        if what < 0.4:
            data.insert(at, r.choice((*SPECIAL, r.randrange(256))))
        elif what < 0.8 and at < len(data):
            del data[at]
        elif at < len(data):
            data[at] = r.randrange(256)
    return bytes(data), None


def m_spliced(r: random.Random, f: Frame) -> Mutant:
    a, b = f.encode(), valid_device_frame(r).encode()
    return a[: r.randrange(len(a))] + b[r.randrange(len(b)) :], None


def m_random_bytes(r: random.Random, f: Frame) -> Mutant:
    return r.randbytes(r.randrange(1, 300)), None


MUTATIONS: list[Callable[[random.Random, Frame], Mutant]] = [
    m_bad_crc,
    m_oversize_len,
    m_runaway,
    m_len_short,
    m_len_long,
    m_cut,
    m_bad_escape,
    m_escape_at_eof,
    m_lone_escape,
    m_unknown_command,
    m_master_command_from_device,
    m_echo,
    m_misaddressed,
    m_garbage,
    m_bitflips,
    m_bitflips,
    m_byte_edits,
    m_byte_edits,
    m_spliced,
    m_random_bytes,
]


def test_fuzz_decoder_mutated_frames() -> None:
    r = rng("decoder")
    n = count(50_000, 1_000_000)
    decoder = FrameDecoder(addresses=ACCEPT, from_device=True)
    drops = decoder.drops
    probes = [valid_device_frame(r) for _ in range(64)]
    probe_wires = [p.encode() for p in probes]
    by_kind: Counter[str] = Counter()
    fed = 0
    with report("serial-decoder", {"mutants": n}) as figures:
        for i in range(n):
            mutate = MUTATIONS[i % len(MUTATIONS)]
            mutant, reason = mutate(r, valid_device_frame(r))
            k = i % len(probes)
            before_total = sum(drops.values())
            before_reason = drops[reason] if reason is not None else 0
            if i % 16 == 0:  # now and then the mutant and the probe split across reads
                stream = mutant + probe_wires[k]
                cut = r.randrange(len(stream) + 1)
                out = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
            else:
                out = decoder.feed(mutant) + decoder.feed(probe_wires[k])
            fed += len(mutant) + len(probe_wires[k])
            context = f"mutant {i} ({mutate.__name__}): {mutant.hex()}"
            assert out, f"the valid frame after it was lost: {context}"
            assert out[-1] == probes[k], f"the valid frame after it was lost: {context}"
            assert decoder.buffered <= MAX_BODY, context
            new_drops = sum(drops.values()) - before_total
            if reason is not None:
                assert len(out) == 1, f"decoded a frame from a broken one: {context}"
                assert new_drops == 1, (
                    f"expected one {reason} drop, got {new_drops} new drops: {context}"
                )
                assert drops[reason] == before_reason + 1, (
                    f"expected one {reason} drop, got {new_drops} new drops: {context}"
                )
            elif any(b != SOF for b in mutant):
                assert len(out) - 1 + new_drops >= 1, f"bytes vanished uncounted: {context}"
            by_kind[mutate.__name__] += 1
        figures["bytes"] = fed
        figures["decoded"] = decoder.frames
        figures["drops"] = dict(sorted((str(k), v) for k, v in drops.items()))
    assert set(drops) == set(DropReason), f"reasons never seen: {set(DropReason) - set(drops)}"


def test_fuzz_random_streams_with_valid_frames_inside() -> None:
    """Pure noise with valid frames dropped in at random: every valid frame that starts on
    a fresh SOF is found, in order, however the stream is cut into reads."""
    r = rng("streams")
    n = count(1_000, 20_000)
    frames_total = 0
    with report("serial-streams", {"streams": n}) as figures:
        for i in range(n):
            decoder = FrameDecoder(addresses=ACCEPT, from_device=True)
            stream = bytearray()
            wanted: list[Frame] = []
            for _ in range(r.randrange(1, 40)):
                stream += r.randbytes(r.randrange(0, 80))
                if r.random() < 0.5:
                    f = valid_device_frame(r)
                    stream += f.encode()
                    wanted.append(f)
            got: list[Frame] = []
            at = 0
            while at < len(stream):
                step = r.choice((1, 7, 64, 512, len(stream)))
                got += decoder.feed(stream[at : at + step])
                at += step
                assert decoder.buffered <= MAX_BODY
            # noise can forge a frame only by a CRC match; never lose a valid one
            it = iter(got)
            assert all(any(g == w for g in it) for w in wanted), f"stream {i} lost a frame"
            frames_total += len(wanted)
        figures["valid_frames"] = frames_total


# --- the link, over a pty ------------------------------------------------------------------

FAST = LinkTiming(
    reply_timeout=0.25,
    byte_gap=0.1,
    poll_interval=0.01,
    offline_after=3,
    offline_poll_interval=0.1,
    status_interval=3600,
    reopen_initial=0.02,
    reopen_max=0.2,
)


async def test_fuzz_link_over_a_pty(tmp_path: Path) -> None:
    r = rng("link")
    n = count(20_000, 200_000)
    batch = 150
    address = 1
    sim = BusSimulator(tmp_path / "bus0", [SimCallPad(address)])
    link = SerialLink(str(sim.path), baudrate=115200, timing=FAST)
    CallPad(link, address, window=1, device="pad-01")
    replica = FrameDecoder(addresses={address}, from_device=True)
    presses: list[PadKeyPress] = []
    pressed: list[str] = []
    injected = skipped = 0
    async with sim, link:
        await link.next_update(10)  # link up
        while not (isinstance(u := await link.next_update(10), DeviceState) and u.online):
            pass
        await sim.wait_for(lambda: 0 in sim[address].acked)
        opened = link.stats.opened
        with report("serial-link", {"mutants": n}) as figures:
            while injected < n:
                chunk = bytearray()
                for _ in range(min(batch, n - injected)):
                    base = Frame(
                        address,
                        r.choice(DEVICE_CMDS),
                        r.randrange(256),
                        random_payload(r),
                        from_device=True,
                    )
                    mutant, _ = r.choice(MUTATIONS)(r, base)
                    unit = mutant + bytes((EOF,))  # leaves any decoder hunting for a start
                    if FrameDecoder(addresses={address}, from_device=True).feed(unit):
                        skipped += 1  # a mutant that is a valid frame would be obeyed
                        continue
                    assert not replica.feed(unit)
                    chunk += unit
                    injected += 1
                sim.inject(bytes(chunk))
                key = r.choice(("CALL", "FINISH", "RECALL", "SKIP"))
                pressed.append(key)
                sim.press(address, key)
                while True:
                    update = await link.next_update(10)
                    if isinstance(update, PadKeyPress):
                        presses.append(update)
                        break
                    assert not isinstance(update, DeviceState) or update.online, update
            # the last batch is in: its drops are counted once the pad's reply follows it
            figures["presses"] = len(presses)
            figures["skipped_valid"] = skipped
            figures["drops"] = dict(sorted((str(k), v) for k, v in link.drops.items()))
            figures["timeouts"] = link.stats.timeouts
        assert link.is_up
        assert link.stats.opened == opened
        assert link.stats.unexpected_frames == 0
        assert link.stats.bad_events == 0
    assert [p.key.name for p in presses] == pressed  # each press once, in order
    theirs = replica.drops
    ours = Counter(link.drops)
    for reason in DropReason:
        if reason == DropReason.GARBAGE:  # the pad's collision bytes add runs of their own
            assert ours[reason] >= theirs[reason]
        else:
            assert ours[reason] == theirs[reason], (reason, ours, theirs)
    assert set(theirs) >= set(DropReason) - {DropReason.WRONG_DIRECTION}
