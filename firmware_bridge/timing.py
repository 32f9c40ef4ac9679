"""Bus timing: how long the master waits, and for what, on a half-duplex RS-485 line.

Only one party may drive the line at a time. The master must not talk before a device's
transceiver has released the bus (turnaround), and must allow for the reply's own time on
the wire, which at 9600 baud is about a millisecond per byte.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LinkTiming"]


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """Defaults suit 9600 baud through a USB-RS485 adapter (its 16 ms latency timer included)."""

    reply_timeout: float = 0.1  # from the end of our frame to the first byte of the reply
    byte_gap: float = 0.05  # a reply that has started may pause this long between bytes
    retries: int = 2  # further attempts of a command (a missed POLL just comes round again)
    turnaround: float | None = None  # quiet line before we transmit; None: 3.5 chars, >= 2 ms
    poll_interval: float | None = None  # shortest round of polls; None: 48 chars, >= 5 ms
    offline_after: int = 3  # consecutive unanswered requests before a device is offline
    offline_poll_interval: float = 5.0  # an offline device is tried this often, not every round
    status_interval: float = 60.0  # how often an online device is asked for STATUS
    events_per_turn: int = 4  # events taken from one device before the next is polled
    reopen_initial: float = 0.25  # backoff after the port failed, doubling...
    reopen_max: float = 5.0  # ...up to this
    bits_per_char: int = 10  # 8N1
    print_settle: float = 0.5  # a ticket printer's time to print before its status is asked
    attention: bool = True  # ask the pads as a group (ATTENTION) instead of one POLL each
    attention_slot: int = 2  # characters per answer slot of an ATTENTION
    routine_poll: float = 1.0  # a device that answers ATTENTION is still POLLed this often
    key_cycle: float | None = None  # longest stretch of commands between two asks for keys;
    # None: 192 characters, at least 20 ms

    def char_time(self, baudrate: int) -> float:
        return self.bits_per_char / baudrate

    def wire_time(self, nbytes: int, baudrate: int) -> float:
        return nbytes * self.char_time(baudrate)

    def round_s(self, baudrate: int) -> float:
        """A floor under one round, so one device on an idle line is not polled flat out.

        48 characters is 50 ms at 9600 baud but 4 ms at 115200: a fixed 50 ms would make a
        fast line's pads wait for nothing.
        """
        if self.poll_interval is not None:
            return self.poll_interval
        return max(0.005, 48 * self.char_time(baudrate))

    def key_cycle_s(self, baudrate: int) -> float:
        """How long commands (LED chunks) may hold the line before the pads are asked again.

        A key waits at most about this long plus one ATTENTION and one POLL, whatever is
        being sent on the line. 192 characters (200 ms at 9600 baud) lets a strip's change
        go as one frame, not three with an ask between each (a third of the line at 9600
        went to asks with 96); at 115200 the 20 ms floor rules.
        """
        if self.key_cycle is not None:
            return self.key_cycle
        return max(0.02, 192 * self.char_time(baudrate))

    def command_payload(self, baudrate: int, limit: int = 200) -> int:
        """The longest payload a long transfer (LED image, delta) should put in one frame:
        one that fits the key cycle (176 bytes at 9600 baud, the whole 200 at 115200)."""
        fits = int(self.key_cycle_s(baudrate) / self.char_time(baudrate)) - 16
        return max(32, min(limit, fits))

    def turnaround_s(self, baudrate: int) -> float:
        if self.turnaround is not None:
            return self.turnaround
        return max(0.002, 3.5 * self.char_time(baudrate))
