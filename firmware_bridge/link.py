"""The bus master: one asyncio task that owns a serial line and every device on it.

RS-485 is half duplex and the devices speak only when asked, so everything on the line
is one sequence of transactions run by a single task: commands from the agent first,
then a round-robin POLL of every attached device. Devices that stop answering are polled
rarely so they do not slow the rest; a port that disappears is reopened with capped,
jittered backoff, and pending commands fail at once instead of running late (a stale
DISPLAY is worse than none). Bad bytes only ever bump a counter.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from firmware_bridge.attention import ATTENTION_MAX, AttentionAnswers, AttentionRequest
from firmware_bridge.errors import (
    BridgeError,
    DeviceRejected,
    DeviceTimeout,
    FrameError,
    LinkDown,
    PortUnavailable,
)
from firmware_bridge.frame import (
    BROADCAST,
    MAX_ADDRESS,
    MAX_PAYLOAD,
    MAX_WIRE_FRAME,
    SOF,
    Command,
    DropReason,
    Frame,
    FrameDecoder,
)
from firmware_bridge.payloads import DeviceStatus, EventType, Identity, NackReason, split_event
from firmware_bridge.port import PortConnection, open_port
from firmware_bridge.seqstore import EventSeqStore
from firmware_bridge.stall import StallWatch
from firmware_bridge.timing import LinkTiming
from firmware_bridge.updates import DeviceEvent, DeviceState, LinkState, Update
from hallq.aio import backoff_delay, cancel_and_wait

__all__ = ["EventSource", "LinkStats", "SerialLink"]

log = logging.getLogger("firmware_bridge.link")

_SUMMARY_EVERY = 60.0
_STABLE_AFTER = 5.0  # a port open this long counts as working again
_STALL_GRANTS = 5  # further reply timeouts a request may get for stalls of this process


class EventSource(Protocol):
    """What the link needs of a driver: where it is and how to read its events."""

    @property
    def address(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def kind(self) -> int: ...

    @property
    def poll_period(self) -> float:
        """Seconds a device that has nothing urgent to say may go unpolled; 0: every round."""
        ...

    def decode_event(self, event: EventType, data: bytes) -> DeviceEvent | None:
        """Raise ValueError (FrameError) for data that does not fit this kind of device."""
        ...


@dataclass(slots=True)
class LinkStats:
    frames_sent: int = 0
    frames_received: int = 0
    timeouts: int = 0
    retries: int = 0
    duplicate_events: int = 0
    bad_events: int = 0
    unexpected_frames: int = 0
    open_failures: int = 0
    opened: int = 0
    dropped_updates: int = 0
    attention_polls: int = 0  # ATTENTION frames sent
    attention_noise: int = 0  # bytes in an answer window that were no slot answer


@dataclass(slots=True)
class _Device:
    source: EventSource
    reply_timeout: float | None
    online: bool | None = None
    misses: int = 0
    last_event_seq: int | None = None  # kept across reconnects, and restarts with a store
    identity: Identity | None = None
    status: DeviceStatus | None = None
    next_poll: float = 0.0
    next_routine: float = 0.0  # a device with a poll_period is not polled before this
    next_status: float = 0.0
    attention: bool = True  # answers ATTENTION (until it stays silent while answering POLLs)
    attention_misses: int = 0


@dataclass(slots=True)
class _Job:
    address: int
    command: Command
    payload: bytes
    retries: int
    future: asyncio.Future[Frame | None] = field(repr=False)


class _PortLost(Exception):
    pass


class _Updates:
    def __init__(self, queue: asyncio.Queue[Update]) -> None:
        self._queue = queue

    def __aiter__(self) -> _Updates:
        return self

    async def __anext__(self) -> Update:
        return await self._queue.get()


class SerialLink:
    """Master of one RS-485 line; use as ``async with SerialLink(url) as link``.

    Attach a driver per device before or after entering; read ``link.updates()`` for
    typed device events and LinkState/DeviceState changes, in order.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        timing: LinkTiming | None = None,
        queue_size: int = 1024,
        seq_store: EventSeqStore | None = None,
    ) -> None:
        self.port = port
        self.seq_store = seq_store
        self.baudrate = baudrate
        self.timing = timing or LinkTiming()
        self.stats = LinkStats()
        self._devices: dict[int, _Device] = {}
        self._decoder = FrameDecoder(addresses=self._devices.__contains__, name=port)
        self._updates: asyncio.Queue[Update] = asyncio.Queue(maxsize=queue_size)
        self._jobs: deque[_Job] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._conn: PortConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._up: bool | None = None
        self._seq = 0
        self._led_frame_id = 0
        self._pending: tuple[Callable[[Frame], bool], asyncio.Future[Frame]] | None = None
        self._answers: tuple[AttentionAnswers, asyncio.Future[None]] | None = None
        self._last_rx = float("-inf")
        self._tx_end = float("-inf")
        self._stalls: StallWatch | None = None
        self._summary_at = 0.0
        self._summary_drops: Counter[DropReason] = Counter()

    def __repr__(self) -> str:
        return f"SerialLink({self.port!r}, {len(self._devices)} devices, up={self.is_up})"

    # --- public API -------------------------------------------------------------------

    def attach(self, source: EventSource, *, reply_timeout: float | None = None) -> None:
        """Poll ``source.address`` from now on; ``reply_timeout`` overrides the link's for it."""
        address = source.address
        if not 1 <= address <= MAX_ADDRESS:
            raise ValueError(f"device address must be 1..{MAX_ADDRESS}, got {address}")
        if address in self._devices:
            other = self._devices[address].source.device
            raise ValueError(f"{self.port}: address {address} is already used by {other!r}")
        dev = self._devices[address] = _Device(source, reply_timeout)
        if self.seq_store is not None:
            dev.last_event_seq = self.seq_store.get(source.device)

    @property
    def is_up(self) -> bool:
        return self._conn is not None and self._conn.is_open

    @property
    def drops(self) -> dict[DropReason, int]:
        """Frames the decoder threw away, by reason, since the link was made."""
        return dict(self._decoder.drops)

    def device_state(self, address: int) -> DeviceState | None:
        dev = self._devices.get(address)
        if dev is None or dev.online is None:
            return None
        return self._state_of(address, dev, "current")

    def updates(self) -> _Updates:
        """Async iterator over events and health changes; meant for one consumer."""
        return _Updates(self._updates)

    async def next_update(self, timeout: float | None = None) -> Update:  # noqa: ASYNC109  public API: the caller bounds each wait
        async with asyncio.timeout(timeout):
            return await self._updates.get()

    async def request(
        self, address: int, command: Command, payload: bytes = b"", *, retries: int | None = None
    ) -> Frame:
        """Send a command and return the device's ACK (or HELLO/STATUS answer).

        Raises LinkDown when the port is closed, DeviceTimeout after the retries,
        DeviceRejected on NACK.
        """
        if not 1 <= address <= MAX_ADDRESS:
            raise ValueError(f"device address must be 1..{MAX_ADDRESS}, got {address}")
        Frame(address, command, 0, payload)  # validate here, in the caller's traceback
        reply = await self._submit(address, command, payload, retries)
        assert reply is not None
        return reply

    async def broadcast(self, command: Command, payload: bytes = b"") -> None:
        """Send to every device at once; nobody answers a broadcast, so nothing is confirmed."""
        Frame(BROADCAST, command, 0, payload)
        await self._submit(BROADCAST, command, payload, 0)

    @property
    def command_payload(self) -> int:
        """The payload size a long transfer should split into on this line: short enough for
        the pads to be asked between frames (LinkTiming.command_payload), or the whole 200
        bytes on a line without devices that have keys (a zone board's own line)."""
        if not any(d.source.poll_period < self.timing.routine_poll for d in self._devices.values()):
            return MAX_PAYLOAD
        return self.timing.command_payload(self.baudrate)

    def next_led_frame_id(self) -> int:
        self._led_frame_id = (self._led_frame_id + 1) & 0xFF
        return self._led_frame_id

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"serial-link {self.port}"
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        self._fail_jobs(LinkDown(f"{self.port}: link closed"))

    # --- commands from the agent ----------------------------------------------------------

    async def _submit(
        self, address: int, command: Command, payload: bytes, retries: int | None
    ) -> Frame | None:
        if not self.is_up:
            raise LinkDown(f"{self.port}: serial port is not open")
        future: asyncio.Future[Frame | None] = asyncio.get_running_loop().create_future()
        attempts = self.timing.retries if retries is None else retries
        self._jobs.append(_Job(address, command, payload, attempts, future))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return await future

    def _fail_jobs(self, exc: BridgeError) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(exc)

    # --- the port's life ----------------------------------------------------------------

    async def _supervise(self) -> None:
        self._stalls = StallWatch.of(asyncio.get_running_loop())
        self._stalls.hold()
        try:
            await self._reopening()
        finally:
            self._stalls.release()

    async def _reopening(self) -> None:
        failures = 0
        while True:
            try:
                conn = await open_port(self.port, baudrate=self.baudrate, on_data=self._on_data)
            except PortUnavailable as exc:
                self.stats.open_failures += 1
                if self._up is not False:
                    self._set_link(False, str(exc))
                else:
                    log.debug("%s: still unavailable: %s", self.port, exc)
                await asyncio.sleep(self._backoff(failures))
                failures += 1
                continue
            self.stats.opened += 1
            opened_at = asyncio.get_running_loop().time()
            self._decoder.reset()
            self._conn = conn
            self._set_link(True, "port open")
            reason = "port closed"
            failed = False
            try:
                await self._serve(conn)
            except _PortLost:
                reason = conn.close_reason()
            except Exception as exc:  # a bug here must not end the link for good
                log.exception("%s: bus loop failed; reopening the port", self.port)
                reason, failed = f"internal error: {exc!r}", True
            finally:
                self._conn = None
                self._pending = None
                self._answers = None
                await conn.close()
                self._fail_jobs(LinkDown(f"{self.port}: serial port lost"))
            self._set_link(False, reason)
            self._all_offline()
            # Reopen at once after a port that worked for a while; back off from one that
            # dies as soon as it opens (a flapping adapter), so it cannot spin the CPU.
            if failed or asyncio.get_running_loop().time() - opened_at < _STABLE_AFTER:
                await asyncio.sleep(self._backoff(failures))
                failures += 1
            else:
                failures = 0

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.timing.reopen_initial, self.timing.reopen_max)

    def _set_link(self, up: bool, reason: str) -> None:
        self._up = up
        if up:
            log.info("%s: link up", self.port)
        else:
            log.warning("%s: link down: %s", self.port, reason)
        self._emit(LinkState(self.port, up, reason))

    def _all_offline(self) -> None:
        for address, dev in self._devices.items():
            dev.misses = 0
            if dev.online:
                dev.online = False
                self._emit(self._state_of(address, dev, "link down"))

    def _on_data(self, data: bytes) -> None:
        self._last_rx = asyncio.get_running_loop().time()
        frames = self._decoder.feed(data) if self._answers is None else self._take_answers(data)
        for frame in frames:
            self.stats.frames_received += 1
            pending = self._pending
            if pending is not None and not pending[1].done() and pending[0](frame):
                pending[1].set_result(frame)
            else:
                self.stats.unexpected_frames += 1
                log.debug("%s: unexpected %r", self.port, frame)

    def _take_answers(self, data: bytes) -> list[Frame]:
        """In an ATTENTION's answer window: a byte between frames that is a slot answer is
        taken as one; everything else goes to the decoder as usual (and counts there)."""
        assert self._answers is not None
        answers, done = self._answers
        frames: list[Frame] = []
        for byte in data:
            if self._decoder.hunting and byte != SOF and answers.take(byte):
                if answers.complete and not done.done():
                    done.set_result(None)
                continue
            frames += self._decoder.feed(bytes((byte,)))
        return frames

    # --- the bus loop --------------------------------------------------------------------

    async def _serve(self, conn: PortConnection) -> None:
        """Cycles of: ask for keys (ATTENTION + the POLLs it calls for), then commands.

        Commands (LED chunks, displays) may hold the line for at most a key cycle before the
        pads are asked again, so a key waits about one cycle, whatever is being sent.
        """
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self._ask_and_poll(conn)
            floor_at = started + self.timing.round_s(self.baudrate)
            cycle_end = started + self.timing.key_cycle_s(self.baudrate)
            while True:
                await self._run_jobs(conn, cycle_end)
                now = loop.time()
                if now >= cycle_end:
                    break
                if self._devices:
                    # the next chunk of a transfer comes within a loop turn: wait that long
                    # at least, else the rest of the round floor
                    woke = await self._idle(conn, max(floor_at - now, 0.001))
                else:
                    woke = await self._idle(conn, None)
                if not woke:
                    break
            self._log_summary(loop.time())

    async def _ask_and_poll(self, conn: PortConnection) -> None:
        """One ask for keys: devices that answer ATTENTION as a group, the rest by POLL.

        POLLed directly: devices not yet heard from, offline ones when due, firmware
        without ATTENTION, LED controllers (no keys) when due, and one ATTENTION device
        per cycle whose routine POLL is due (so a lost slot byte delays a key by at most
        ``routine_poll``, and STATUS keeps coming).
        """
        now = asyncio.get_running_loop().time()
        direct: list[int] = []
        listed: list[int] = []
        routine: _Device | None = None
        routine_at = 0
        for address in sorted(self._devices):
            dev = self._devices[address]
            grouped = (
                self.timing.attention
                and dev.attention
                and dev.online is True
                and dev.source.poll_period < self.timing.routine_poll
            )
            if not grouped:
                if self._due(dev, now):
                    direct.append(address)
                continue
            listed.append(address)
            if now >= dev.next_routine and (
                routine is None or dev.next_routine < routine.next_routine
            ):
                routine, routine_at = dev, address
        if routine is not None:
            listed.remove(routine_at)
            direct.append(routine_at)
            routine.next_routine = now + max(self.timing.routine_poll, routine.source.poll_period)
        flagged: list[int] = []
        silent: set[int] = set()
        for start in range(0, len(listed), ATTENTION_MAX):
            answers = await self._attention(conn, listed[start : start + ATTENTION_MAX])
            flagged += answers.to_poll()
            silent.update(answers.silent())
            for address in answers.answers:
                self._devices[address].attention_misses = 0
        for address in sorted({*direct, *flagged}):
            polled = self._devices.get(address)
            if polled is None:
                continue
            await self._poll_turn(conn, address, polled)
            if address in silent and polled.misses == 0 and polled.online:
                self._attention_missed(address, polled)

    def _attention_missed(self, address: int, dev: _Device) -> None:
        """It answers POLL but not ATTENTION: firmware from before ATTENTION, after 3 tries."""
        dev.attention_misses += 1
        if dev.attention_misses >= 3:
            dev.attention = False
            log.info(
                "%s: device %d (%s) does not answer ATTENTION (older firmware); "
                "polling it every round",
                self.port,
                address,
                dev.source.device,
            )

    async def _attention(self, conn: PortConnection, addresses: list[int]) -> AttentionAnswers:
        """Send one ATTENTION and collect the slot bytes until all came or time is up."""
        loop = asyncio.get_running_loop()
        request = AttentionRequest(self.timing.attention_slot, tuple(addresses))
        answers = AttentionAnswers(request)
        done: asyncio.Future[None] = loop.create_future()
        sent = await self._send(
            conn, Frame(BROADCAST, Command.ATTENTION, self._next_seq(), request.encode())
        )
        self.stats.attention_polls += 1
        self._answers = (answers, done)  # set right after the write: no reply can come first
        try:
            deadline = (
                self._tx_end
                + self.timing.wire_time(request.wire_chars(), self.baudrate)
                + self.timing.reply_timeout
            )
            since, grants = sent, 0
            while True:
                await asyncio.wait(
                    {done, conn.closed},
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if conn.closed.done():
                    raise _PortLost
                if done.done():
                    break
                later = self._still_coming(conn, sent, since, deadline, grants)
                if later is None:
                    break
                deadline, woke_late = later
                if woke_late:
                    since, grants = loop.time(), grants + 1
        finally:
            self._answers = None
            done.cancel()
        self.stats.attention_noise += answers.noise
        return answers

    @staticmethod
    def _due(dev: _Device, now: float) -> bool:
        """Pads every round; an LED controller (it only ever reports a reboot) now and then.

        A round is as short as the devices that may have a key waiting make it, so a
        pressed key waits at most one such round.
        """
        if dev.online is False:
            return now >= dev.next_poll
        if dev.online and now < dev.next_routine:
            return False
        dev.next_routine = now + dev.source.poll_period
        return True

    async def _idle(self, conn: PortConnection, timeout: float | None) -> bool:  # noqa: ASYNC109  the rest of a polling round, not a deadline
        """Wait out the rest of a round, but start at once when a command arrives (True)."""
        if self._jobs:
            return True
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait(
                {self._wake, conn.closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._wake.cancel()
            self._wake = None
        if conn.closed.done():
            raise _PortLost
        return bool(self._jobs)

    async def _run_jobs(self, conn: PortConnection, until: float | None = None) -> None:
        """Run queued commands; past ``until`` (after at least one), leave the rest for later."""
        loop = asyncio.get_running_loop()
        ran = False
        while self._jobs:
            if ran and until is not None and loop.time() >= until:
                return
            job = self._jobs.popleft()
            if job.future.done():  # the caller gave up
                continue
            ran = True
            try:
                if job.address == BROADCAST:
                    await self._send(
                        conn, Frame(BROADCAST, job.command, self._next_seq(), job.payload)
                    )
                    reply = None
                else:
                    reply = await self._command(
                        conn, job.address, job.command, job.payload, job.retries
                    )
            except _PortLost:
                job.future.set_exception(LinkDown(f"{self.port}: serial port lost"))
                raise
            except BridgeError as exc:
                if not job.future.done():
                    job.future.set_exception(exc)
                continue
            if not job.future.done():
                job.future.set_result(reply)

    async def _command(
        self, conn: PortConnection, address: int, command: Command, payload: bytes, retries: int
    ) -> Frame:
        seq = self._next_seq()
        frame = Frame(address, command, seq, payload)

        def expect(reply: Frame) -> bool:
            return reply.address == address and reply.seq == seq and reply.command != Command.EVENT

        for attempt in range(1 + retries):
            if attempt:
                self.stats.retries += 1
            reply = await self._transact(conn, frame, expect)
            if reply is None:
                self._missed(address, command)
                continue
            self._answered(address)
            if reply.command == Command.NACK:
                raise DeviceRejected(address, command.name, NackReason.describe(reply.payload))
            return reply
        raise DeviceTimeout(address, command.name, 1 + retries)

    async def _poll_turn(self, conn: PortConnection, address: int, dev: _Device) -> None:
        for _ in range(max(1, self.timing.events_per_turn)):
            seq = self._next_seq()

            def expect(reply: Frame, seq: int = seq) -> bool:
                return reply.address == address and (
                    reply.command == Command.EVENT or reply.seq == seq
                )

            reply = await self._transact(conn, Frame(address, Command.POLL, seq), expect)
            if reply is None:
                self._missed(address, Command.POLL)
                return
            was_online = dev.online is True
            event = self._split(address, reply) if reply.command == Command.EVENT else None
            self._answered(address)
            if not was_online:
                if event is not None and event[0] == EventType.BOOT:
                    dev.identity = self._identity(address, event[1]) or dev.identity
                await self._come_online(conn, address, dev)
            if reply.command != Command.EVENT:
                break
            await self._take_event(conn, address, dev, reply, event, was_online)
        loop = asyncio.get_running_loop()
        if dev.online and loop.time() >= dev.next_status:
            status = await self._ask_status(conn, address, dev)
            changed = status is not None and (
                dev.status is None or status.flags != dev.status.flags
            )
            dev.status = status
            if changed:
                self._emit(self._state_of(address, dev, "status"))

    async def _take_event(
        self,
        conn: PortConnection,
        address: int,
        dev: _Device,
        reply: Frame,
        event: tuple[EventType, bytes] | None,
        was_online: bool,
    ) -> None:
        """Deliver the event, then ACK it: the key is on its way while the ACK waits out the
        line's turnaround. A lost ACK or a port lost before it only makes the device repeat
        the event, which the SEQ check drops, as before."""
        self._accept_event(address, dev, reply, event, was_online)
        await self._send(conn, Frame(address, Command.ACK, reply.seq))

    def _accept_event(
        self,
        address: int,
        dev: _Device,
        reply: Frame,
        event: tuple[EventType, bytes] | None,
        was_online: bool,
    ) -> None:
        if dev.last_event_seq == reply.seq:
            self.stats.duplicate_events += 1
            log.debug(
                "%s: device %d repeated event seq %d; ACKed again", self.port, address, reply.seq
            )
            return
        dev.last_event_seq = reply.seq
        if self.seq_store is not None:  # before delivering: a crash loses a press, never doubles it
            self.seq_store.put(dev.source.device, reply.seq)
        if event is None:
            return
        kind, data = event
        if kind == EventType.BOOT:
            dev.identity = self._identity(address, data) or dev.identity
            dev.attention, dev.attention_misses = True, 0  # new firmware may answer it now
            if was_online:
                self._emit(self._state_of(address, dev, "rebooted"))
            return
        try:
            typed = dev.source.decode_event(kind, data)
        except ValueError as exc:
            # The driver's message names the problem, never the data (it may be an ID number).
            self.stats.bad_events += 1
            log.warning("%s: device %d sent a bad %s event: %s", self.port, address, kind.name, exc)
            return
        except Exception:
            self.stats.bad_events += 1
            log.exception(
                "%s: driver for device %d failed on a %s event", self.port, address, kind.name
            )
            return
        if typed is not None:
            self._emit(typed)

    def _split(self, address: int, reply: Frame) -> tuple[EventType, bytes] | None:
        try:
            return split_event(reply.payload)
        except FrameError as exc:
            self.stats.bad_events += 1
            log.warning("%s: device %d sent a bad event: %s", self.port, address, exc)
            return None

    def _identity(self, address: int, data: bytes) -> Identity | None:
        try:
            return Identity.decode(data)
        except FrameError as exc:
            self.stats.bad_events += 1
            log.warning("%s: device %d sent a bad identity: %s", self.port, address, exc)
            return None

    async def _come_online(self, conn: PortConnection, address: int, dev: _Device) -> None:
        if dev.identity is None:
            try:
                hello = await self._command(conn, address, Command.HELLO, b"", self.timing.retries)
                dev.identity = self._identity(address, hello.payload)
            except (DeviceTimeout, DeviceRejected) as exc:
                log.info("%s: device %d gave no identity: %s", self.port, address, exc)
        dev.status = await self._ask_status(conn, address, dev)
        dev.online = True
        reason = "answering"
        want = dev.source.kind
        if dev.identity is not None and dev.identity.kind != want:
            reason = f"answers as {dev.identity.kind_name}, configured as kind {want}"
            log.warning("%s: device %d %s", self.port, address, reason)
        log.info("%s: device %d (%s) online", self.port, address, dev.source.device)
        self._emit(self._state_of(address, dev, reason))

    async def _ask_status(
        self, conn: PortConnection, address: int, dev: _Device
    ) -> DeviceStatus | None:
        dev.next_status = asyncio.get_running_loop().time() + self.timing.status_interval
        try:
            reply = await self._command(conn, address, Command.STATUS, b"", 0)
            return DeviceStatus.decode(reply.payload)
        except (DeviceTimeout, DeviceRejected, FrameError) as exc:
            log.info("%s: device %d gave no status: %s", self.port, address, exc)
            return dev.status

    def _answered(self, address: int) -> None:
        dev = self._devices.get(address)
        if dev is not None:
            dev.misses = 0

    def _missed(self, address: int, command: Command) -> None:
        self.stats.timeouts += 1
        dev = self._devices.get(address)
        if dev is None:
            return
        dev.misses += 1
        now = asyncio.get_running_loop().time()
        if dev.misses >= self.timing.offline_after and dev.online is not False:
            dev.online = False
            reason = f"no answer to {dev.misses} requests (last {command.name})"
            log.warning(
                "%s: device %d (%s) offline: %s", self.port, address, dev.source.device, reason
            )
            self._emit(self._state_of(address, dev, reason))
        if dev.online is False:
            dev.next_poll = now + self.timing.offline_poll_interval

    # --- one transaction on the wire -------------------------------------------------------

    async def _quiet(self, conn: PortConnection) -> None:
        """Let the line go quiet: our own last frame out, and the turnaround after any reply."""
        loop = asyncio.get_running_loop()
        ready = max(self._tx_end, self._last_rx + self.timing.turnaround_s(self.baudrate))
        delay = ready - loop.time()
        if delay > 0:
            await asyncio.wait({conn.closed}, timeout=delay)
        if conn.closed.done():
            raise _PortLost

    async def _send(self, conn: PortConnection, frame: Frame) -> float:
        await self._quiet(conn)
        data = frame.encode()
        sent = asyncio.get_running_loop().time()
        conn.write(data)
        self.stats.frames_sent += 1
        self._tx_end = sent + self.timing.wire_time(len(data), self.baudrate)
        return sent

    async def _transact(
        self, conn: PortConnection, frame: Frame, expect: Callable[[Frame], bool]
    ) -> Frame | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Frame] = loop.create_future()
        self._pending = (expect, future)
        try:
            sent = await self._send(conn, frame)
            dev = self._devices.get(frame.address)
            timeout = self.timing.reply_timeout
            if dev is not None and dev.reply_timeout is not None:
                timeout = dev.reply_timeout
            gap = self.timing.byte_gap
            deadline = self._tx_end + timeout
            limit = deadline + self.timing.wire_time(MAX_WIRE_FRAME, self.baudrate) + gap
            since, grants = sent, 0
            while True:
                waiting: set[asyncio.Future[Any]] = {future, conn.closed}
                await asyncio.wait(
                    waiting,
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if future.done():
                    return future.result()
                if conn.closed.done():
                    raise _PortLost
                later = self._still_coming(conn, sent, since, deadline, grants)
                if later is None:
                    return None
                deadline, woke_late = later
                if woke_late:
                    since, grants = loop.time(), grants + 1
                    limit = deadline + self.timing.wire_time(MAX_WIRE_FRAME, self.baudrate)
                elif loop.time() >= limit:
                    return None
        finally:
            self._pending = None
            future.cancel()

    def _still_coming(
        self, conn: PortConnection, sent: float, since: float, deadline: float, grants: int
    ) -> tuple[float, bool] | None:
        """At a reply deadline: a later one if the answer may still be on its way (and
        whether it is granted for a stall), else None.

        Bytes the OS holds mean it answered and this process was slow to read; bytes that
        arrived within ``byte_gap`` mean an answer is still coming in. A process that stood
        still since it sent (``since``: or since the last such grant) cannot tell a silent
        device from one it did not get to hear (a loaded machine; the demo's one loop
        running a whole hall and its simulated devices), so it waits one more reply timeout
        from now, at most ``_STALL_GRANTS`` times a request: otherwise the answer arrives
        after the master gave up, counts as garbage and collides with its next frame.
        """
        now = asyncio.get_running_loop().time()
        gap = self.timing.byte_gap
        if conn.bytes_waiting():
            return now + gap, False
        if self._last_rx > sent and now - self._last_rx < gap:
            return self._last_rx + gap, False
        stalled = now - deadline > gap or (
            self._stalls is not None and self._stalls.stalled_since(since)
        )
        if stalled and grants < _STALL_GRANTS:
            return now + self.timing.reply_timeout, True
        return None

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    # --- reporting -------------------------------------------------------------------------

    def _state_of(self, address: int, dev: _Device, reason: str) -> DeviceState:
        return DeviceState(
            self.port,
            dev.source.device,
            address,
            bool(dev.online),
            reason,
            dev.identity,
            dev.status,
        )

    def _emit(self, update: Update) -> None:
        if self._updates.full():
            self._updates.get_nowait()
            self.stats.dropped_updates += 1
            log.warning("%s: update queue full; dropped the oldest update", self.port)
        self._updates.put_nowait(update)

    def _log_summary(self, now: float) -> None:
        if now - self._summary_at < _SUMMARY_EVERY:
            return
        self._summary_at = now
        new = self._decoder.drops - self._summary_drops
        if new:
            self._summary_drops = Counter(self._decoder.drops)
            detail = ", ".join(f"{reason}={n}" for reason, n in sorted(new.items()))
            log.warning("%s: frames dropped since last report: %s", self.port, detail)
