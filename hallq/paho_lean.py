"""Where paho 2.2 spends per message what a busy process cannot afford, done leaner.

Each patch keeps paho's behaviour and falls back to paho's own code for anything it does
not cover; the bus applies them to every client it makes (``hallq.bus.broker_client``).
paho is pinned to 2.2.x (pyproject) because these reach into its internals.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any

from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@functools.cache
def lean_pubacks() -> None:
    """paho 2.2 decodes every PUBACK into a new ReasonCode and a new MQTT 5 Properties,
    each building its name tables first (~50 µs a PUBACK; the coordinator gets one for
    each of the ~6 messages it sends per command). A PUBACK without properties (what
    Mosquitto sends) gets shared, never changed ones per reason code instead; anything
    else, and paho versions without ``_packet.decode_puback``, are left to paho."""
    try:
        from paho.mqtt import _packet
    except ImportError:  # paho 2.1: PUBACKs are decoded inside the client
        return
    decode = getattr(_packet, "decode_puback", None)
    if decode is None:
        return
    v5 = MQTTProtocolVersion.MQTTv5.value
    shared: dict[tuple[int, bytes], tuple[Any, Any]] = {}

    def decode_puback(header: int, packet: bytes | bytearray, protocol: Any) -> Any:
        size = len(packet)
        if size != 2 and not (size == 3 and protocol == v5):
            return decode(header, packet, protocol)  # properties, or malformed: paho's
        key = (protocol, bytes(packet[2:]))
        parts = shared.get(key)
        if parts is None:
            first = decode(header, packet, protocol)
            parts = shared[key] = (first.reason, first.properties)
        return _packet.PubackPacket(int.from_bytes(packet[:2], "big"), *parts)

    # paho's own stays reachable as ``__wrapped__``
    _packet.decode_puback = functools.update_wrapper(decode_puback, decode)


COALESCE_BYTES = 64 * 1024  # the most one coalesced write joins


def coalesce_writes(paho_client: Any) -> None:
    """paho writes every queued packet with a send of its own (one TCP segment each with
    TCP_NODELAY): the coordinator's PUBACKs, replies, events and states of a group then
    cost a system call apiece here and a read apiece at the broker. Before paho writes,
    runs of queued packets that need nothing done once written (anything but a QoS 0
    PUBLISH, whose write completes it, and DISCONNECT) are joined into one; paho's own
    loop then writes it, partial writes included. A QoS 1/2 PUBLISH is completed by its
    PUBACK, which paho matches by packet id, not by its queue entry."""
    write = paho_client._packet_write
    publish, disconnect = int(PacketTypes.PUBLISH) << 4, int(PacketTypes.DISCONNECT) << 4

    def joinable(packet: Any) -> bool:
        kind = packet["command"] & 0xF0
        return kind != disconnect and not (kind == publish and packet["qos"] == 0)

    def packet_write() -> Any:
        queue = paho_client._out_packet
        if len(queue) > 1:
            out: collections.deque[Any] = collections.deque()
            run: list[Any] = []
            size = 0

            def flush() -> None:
                if len(run) == 1:
                    out.append(run[0])
                elif run:
                    data = b"".join(bytes(p["packet"][p["pos"] :]) for p in run)
                    out.append(
                        {
                            "command": run[0]["command"],
                            "mid": run[0]["mid"],
                            "qos": run[0]["qos"],
                            "pos": 0,
                            "to_process": len(data),
                            "packet": data,
                            "info": run[0]["info"],
                        }
                    )
                run.clear()

            for packet in queue:
                if joinable(packet) and size < COALESCE_BYTES:
                    run.append(packet)
                    size += packet["to_process"]
                    continue
                flush()
                size = 0
                if joinable(packet):
                    run.append(packet)
                    size = packet["to_process"]
                else:
                    out.append(packet)
            flush()
            if len(out) < len(queue):
                queue.clear()
                queue.extend(out)
        return write()

    paho_client._packet_write = packet_write


@functools.cache
def lean_properties() -> None:
    """paho builds three name and type tables for every MQTT 5 ``Properties`` it makes
    (~10 µs: one for each message received, each PUBACK decoded by paho, each publish with
    an expiry). The tables are constants: every ``Properties`` made after this shares one
    set of them (paho only reads them)."""
    init = Properties.__init__
    tables = Properties(PacketTypes.PUBLISH).__dict__
    shared = {name: tables[name] for name in ("types", "names", "properties")}

    def lean_init(self: Properties, packetType: int) -> None:
        self.__dict__.update(shared)
        object.__setattr__(self, "packetType", packetType)

    Properties.__init__ = functools.update_wrapper(lean_init, init)  # type: ignore[method-assign]


class FixedProperties(Properties):
    """Properties set once and never changed (an expiry shared by every publish of a
    topic kind): packed once, not on every send (paho walks its whole name table for
    each pack, ~10 µs)."""

    def __init__(self, packetType: int) -> None:
        super().__init__(packetType)  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = super().pack()  # type: ignore[no-untyped-call]
            object.__setattr__(self, "_packed", packed)
        return packed


READ_CHUNK = 64 * 1024  # bytes asked of the socket at once


def buffered_reads(paho_client: Any) -> Callable[[], int]:
    """paho reads each packet with two or three ``recv`` calls (its type byte, its length
    byte by byte, then the rest): ~15 system calls for the one command and four PUBACKs
    the coordinator reads per command. Reads here take what the socket holds, up to
    READ_CHUNK, and hand paho its bytes from that. Returns how many bytes are held, not
    yet given to paho: a reader must not wait on the socket while any are."""
    recv = paho_client._sock_recv
    held = b""
    pos = 0
    sock: Any = None

    def sock_recv(bufsize: int) -> bytes:
        nonlocal held, pos, sock
        if paho_client._sock is not sock:  # a new connection: nothing of the old one
            held, pos, sock = b"", 0, paho_client._sock
        if pos >= len(held):
            data: bytes = recv(READ_CHUNK)  # paho's own errors: BlockingIOError, ...
            if len(data) <= bufsize:
                return data  # (b"": the connection ended)
            held, pos = data, 0
        chunk = held[pos : pos + bufsize]
        pos += len(chunk)
        return chunk

    def pending() -> int:
        return len(held) - pos if paho_client._sock is sock else 0

    paho_client._sock_recv = sock_recv
    return pending
