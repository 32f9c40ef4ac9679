"""Where paho 2.2 spends per message what a busy process cannot afford, done leaner.

Each patch keeps paho's behaviour and falls back to paho's own code for anything it does
not cover; the bus applies them to every client it makes (``hallq.bus.broker_client``).
paho is pinned to 2.2.x (pyproject) because these reach into its internals.
"""

from __future__ import annotations

import collections
import functools
import sys
from typing import Any

from paho.mqtt.client import (
    MQTT_LOG_ERR,
    MQTTMessage,
    MQTTMessageInfo,
    mqtt_ms_invalid,
    time_func,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.matcher import MQTTMatcher
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
PUBLISH_HEADER, PUBACK_HEADER = 0x30, 0x40
_EOF = object()  # the socket's end, read ahead of paho: paho is told on its next read


class LeanReader:
    """Reads for one paho client, installed as its ``_sock_recv``.

    paho reads each packet with two or three ``recv`` calls (its type byte, its length
    byte by byte, then the rest), and decodes each PUBLISH and PUBACK through several
    layers (a struct format built per packet, a ``Properties`` unpacked by name tables, an
    ``MQTTMessageInfo`` with its ``threading.Condition`` per message received, a debug
    line formatted per packet): 19% of a busy coordinator's event loop went there
    (BENCHMARKS.md, fourth round). Reads here take what the socket holds, up to
    READ_CHUNK, and :meth:`step` handles the packets a busy client gets by the thousand
    itself, from those bytes: a well-formed PUBLISH at QoS 0 or 1 and a PUBACK without
    properties, with paho's own bookkeeping and callbacks (``on_message``, ``on_publish``,
    the keepalive's clock). Everything else (a packet split by the end of a read, CONNACK,
    SUBACK, PINGRESP, QoS 2, a PUBACK with properties, anything malformed or a topic that
    is not UTF-8) is left where it is and paho reads it from the held bytes as before, so
    what a hostile or broken peer sends meets paho's checks unchanged.

    Calling the reader returns how many bytes are held, not yet handled (one more when the
    socket's end or error was read ahead, for paho to hear of): a reader must not wait on
    the socket while any are."""

    def __init__(self, paho_client: Any) -> None:
        from paho.mqtt import _packet

        self._paho = paho_client
        self._recv = paho_client._sock_recv
        self._held = b""
        self._pos = 0
        self._sock: Any = None
        self._deferred: Any = None  # what the socket said while reading ahead
        self._decode_puback = _packet.decode_puback
        self._no_info = MQTTMessageInfo(0)  # of received messages: paho never uses it
        self._v5 = MQTTProtocolVersion.MQTTv5
        # only for paho's v2 callbacks (every hallq client): anything else reads as paho
        version = getattr(paho_client, "_callback_api_version", None)
        self.lean = version is CallbackAPIVersion.VERSION2
        paho_client._sock_recv = self._sock_recv
        matcher = QuickMatcher()  # type: ignore[no-untyped-call]
        matcher._root = paho_client._on_message_filtered._root
        paho_client._on_message_filtered = matcher

    def __call__(self) -> int:
        if self._paho._sock is not self._sock:
            return 0
        return len(self._held) - self._pos + (self._deferred is not None)

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's read: its bytes from what was read from the socket, in the pieces it
        asks for; a new connection starts with nothing held."""
        if self._paho._sock is not self._sock:
            self._held, self._pos, self._sock, self._deferred = b"", 0, self._paho._sock, None
        if self._pos >= len(self._held):
            deferred, self._deferred = self._deferred, None
            if deferred is _EOF:
                return b""
            if deferred is not None:
                raise deferred
            data: bytes = self._recv(READ_CHUNK)  # paho's own errors: BlockingIOError, ...
            if len(data) <= bufsize:
                return data  # (b"": the connection ended)
            self._held, self._pos = data, 0
        chunk = self._held[self._pos : self._pos + bufsize]
        self._pos += len(chunk)
        return chunk

    def _fill(self) -> bool:
        """Read what the socket holds; False when there is nothing to read now (what the
        socket said, an error or its end, is kept for paho's next read)."""
        try:
            data = self._recv(READ_CHUNK)
        except BlockingIOError:
            return False
        except Exception as exc:
            self._deferred = exc
            return False
        if not data:
            self._deferred = _EOF
            return False
        self._held, self._pos = data, 0
        return True

    def step(self, most: int = 1000) -> None:
        """Handle what was received: up to ``most`` packets taken here, then (if one is
        left that is not ours to take) one packet read by paho; as ``loop_read`` does, a
        connection found broken is closed and reported by paho."""
        paho = self._paho
        if paho._sock is None:
            return
        if paho._sock is not self._sock:
            self._held, self._pos, self._sock, self._deferred = b"", 0, paho._sock, None
        if self.lean and paho._in_packet["command"] == 0:
            taken = 0
            while taken < most:
                if self._pos >= len(self._held):
                    if self._deferred is not None:
                        break  # paho reads the error or the end
                    if not self._fill():
                        if self._deferred is not None:
                            break
                        if taken:
                            paho._last_bytes_received = time_func()
                        return  # nothing more to read now
                if not self._take():
                    break
                taken += 1
                if paho._sock is not self._sock:
                    return  # a callback ended the connection
            if taken:
                paho._last_bytes_received = time_func()
                if taken >= most:
                    return
            if self._pos >= len(self._held) and self._deferred is None:
                return
        rc = paho._packet_read()
        if rc > 0:
            paho._loop_rc_handle(rc)

    def _take(self) -> bool:
        """The next packet, if it is whole and one of ours; False leaves it to paho."""
        data, pos = self._held, self._pos
        end = len(data)
        if end - pos < 2:
            return False
        header = data[pos]
        kind = header & 0xF0
        if kind != PUBLISH_HEADER and kind != PUBACK_HEADER:
            return False
        length, mult, at = 0, 1, pos + 1
        while True:  # the remaining length: at most 4 bytes
            if at >= end or at - pos > 4:
                return False
            byte = data[at]
            at += 1
            length += (byte & 127) * mult
            mult *= 128
            if not byte & 128:
                break
        if at + length > end:
            return False  # split by the end of this read: paho reads it whole
        body = data[at : at + length]
        if kind == PUBACK_HEADER:
            if not self._puback(header, body):
                return False
        elif not self._publish(header, body):
            return False
        self._pos = at + length
        return True

    def _puback(self, header: int, body: bytes) -> bool:
        paho = self._paho
        if header != PUBACK_HEADER or not (
            len(body) == 2 or (len(body) == 3 and paho._protocol == self._v5)
        ):
            return False  # properties, or malformed: paho's
        mid = (body[0] << 8) | body[1]
        message = paho._out_messages.get(mid)
        if message is None:
            return True  # paho ignores an acknowledgement of nothing it holds
        on_publish: Any = paho._on_publish
        if getattr(on_publish, "__func__", None) is _aiomqtt_on_publish():
            # aiomqtt's own callback (sets what it holds for the packet id; the reason
            # and properties go unread): done here without decoding them, and without
            # its suppress(KeyError) context, ~1 µs of the 3.5 PUBACKs a command
            with paho._in_callback_mutex:
                waiter = on_publish.__self__._pending_publishes.pop(mid, None)
                if waiter is not None:
                    waiter.set()
        elif on_publish is not None:
            result = self._decode_puback(header, body, paho._protocol)
            with paho._in_callback_mutex:
                try:
                    on_publish(paho, paho._userdata, mid, result.reason, result.properties)
                except Exception as err:
                    paho._easy_log(MQTT_LOG_ERR, "Caught exception in on_publish: %s", err)
                    if not paho.suppress_exceptions:
                        raise
        paho._out_messages.pop(mid, None)
        message.info._set_as_published()
        if message.qos > 0:
            paho._inflight_messages -= 1
            if paho._max_inflight_messages > 0:
                self._check(paho._update_inflight())
        return True

    def _check(self, rc: Any) -> None:
        """As paho's read does with what handling a packet returned: an error ends the
        connection (closed and reported by paho)."""
        if rc > 0:
            self._paho._loop_rc_handle(rc)

    def _publish(self, header: int, body: bytes) -> bool:
        paho = self._paho
        qos = (header >> 1) & 3
        if qos > 1 or len(body) < 2:
            return False  # QoS 2 (paho's handshake), or malformed
        size = (body[0] << 8) | body[1]
        at = 2 + size
        if size == 0 or at > len(body):
            return False  # an alias or an empty topic, or malformed
        topic = body[2:at]
        try:
            topic.decode("utf-8")
        except UnicodeDecodeError:
            return False  # paho's way with it
        mid = 0
        if qos:
            if at + 2 > len(body):
                return False
            mid = (body[at] << 8) | body[at + 1]
            if mid == 0:
                return False
            at += 2
        properties = None
        if paho._protocol == self._v5:
            properties = Properties(PacketTypes.PUBLISH)
            if at >= len(body):
                return False
            plen = body[at]
            if plen == 0:
                at += 1
            elif plen == 5 and at + 6 <= len(body) and body[at + 1] == 0x02:
                # the contract's one property: the expiry (what paho's unpack would set)
                expiry = int.from_bytes(body[at + 2 : at + 6], "big")
                object.__setattr__(properties, "MessageExpiryInterval", expiry)
                at += 6
            else:
                try:
                    _, used = properties.unpack(body[at:])
                except Exception:
                    return False
                at += used
                if at > len(body):
                    return False
        message = MQTTMessage.__new__(MQTTMessage)
        message.mid = mid
        message._topic = topic
        message.info = self._no_info
        message.state = mqtt_ms_invalid  # (paho's own for a received message)
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = properties
        message.payload = body[at:]
        message.timestamp = time_func()
        paho._handle_on_message(message)  # its callbacks, its error handling
        if qos == 1 and not paho._manual_ack:
            self._check(paho._send_puback(mid))
        return True


def _aiomqtt_on_publish() -> Any:
    """aiomqtt's PUBACK callback, the function its clients' bound ``on_publish`` wraps;
    where aiomqtt is not loaded, a marker no callback's ``__func__`` is (a bare paho
    client's callbacks are then called as paho calls them)."""
    aiomqtt = sys.modules.get("aiomqtt")
    return _NOT_LOADED if aiomqtt is None else aiomqtt.Client._on_publish


_NOT_LOADED = object()


class QuickMatcher(MQTTMatcher):
    """paho's per-topic callback table. paho matches every message received against it,
    and its matcher builds a closure that refers to itself for each match: a reference
    cycle (six objects) per message, left for the collector. At a busy coordinator's few
    thousand messages a second those were four in five of the objects a young collection
    walked (issue 19). hallq registers no per-topic callback; with none, nothing is built."""

    def iter_match(self, topic: str) -> Any:
        if not self._root._children:
            return iter(())
        return super().iter_match(topic)  # type: ignore[no-untyped-call]


def buffered_reads(paho_client: Any) -> LeanReader:
    """Install a :class:`LeanReader` as ``paho_client``'s reads and return it."""
    return LeanReader(paho_client)
