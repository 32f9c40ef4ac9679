"""The lean MQTT read and publish paths (``hallq.paho_lean``) against paho's own.

The reads are checked differentially: the same bytes from the broker's side of a socket pair
go through paho's ``loop_read`` and through ``LeanReader.step``, whole, cut at every byte,
and with malformed or hostile frames after good ones; what the callbacks saw, what was
acknowledged and whether the connection was closed must be the same. Then the session
against a real Mosquitto: bursts that the reads cut anywhere, and batches published at once.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hallq import messages as m
from hallq.bus import Session
from hallq.paho_batch import publish_batch
from hallq.paho_lean import LeanReader, lean_properties, lean_pubacks
from hallq.topics import HallTopics

from .conftest import Inbox, Mosquitto

T = HallTopics("liwan")
V5, V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311


def _length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | 128 if size else byte)
        if not size:
            return bytes(out)


def publish(
    topic: bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 1,
    retain: bool = False,
    dup: bool = False,
    props: bytes | None = b"\x00",
) -> bytes:
    """A PUBLISH as a broker sends it (``props`` None: MQTT 3.1.1, no properties)."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    body += (props or b"") + payload
    return bytes((0x30 | dup << 3 | qos << 1 | retain,)) + _length(len(body)) + body


def puback(mid: int, extra: bytes = b"") -> bytes:
    return b"\x40" + _length(2 + len(extra)) + mid.to_bytes(2, "big") + extra


EXPIRY_30 = b"\x05\x02\x00\x00\x00\x1e"
USER_PROPERTY = b"\x07\x26\x00\x01a\x00\x01b"  # ("a", "b")


def good(v5: bool) -> bytes:
    props = EXPIRY_30 if v5 else None
    empty = b"\x00" if v5 else None
    return b"".join(
        [
            publish(b"hallq/v1/liwan/window/w1/cmd", b'{"a":1}', mid=7, props=props),
            publish(b"hallq/v1/liwan/status/x", b"", qos=0, retain=True, props=empty),
            puback(1),
            publish(b"t/\xe4\xb8\xad", b"x" * 300, mid=8, dup=True, props=empty),  # UTF-8
            puback(2, b"\x10" if v5 else b""),  # v5: "no matching subscribers"
            publish(b"t/u", b"u", mid=9, props=USER_PROPERTY if v5 else None),
            puback(99),  # nothing of ours: ignored
            publish(b"t/q2", b"two", qos=2, mid=10, props=empty),  # paho's handshake
            puback(3),
        ]
    )


HOSTILE = {
    "remaining length over 4 bytes": b"\x30\xff\xff\xff\xff\x01",
    "topic longer than the packet": b"\x32\x05\x00\x40abc",
    "packet id 0": publish(b"t", b"x", mid=0, props=None),
    "topic not UTF-8": publish(b"t/\xff\xfe", b"x", props=None),
    "QoS 3": b"\x36\x06\x00\x01t\x00\x01x",
    "PUBACK with bogus properties": b"\x40\x05\x00\x01\x00\x05\x99",
    "empty topic": publish(b"", b"x", props=None),
}


class Peer:
    """A paho client whose socket's other end is the test's: what its callbacks saw."""

    def __init__(self, protocol: MQTTProtocolVersion, lean: bool) -> None:
        lean_pubacks()
        lean_properties()
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol)
        self.client._sock = self.a
        self.client.max_inflight_messages_set(0)
        self.seen: list[Any] = []
        self.client.on_message = self._message
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.seen.append(("acked", mid, rc))
        self.client.on_disconnect = lambda *args: self.seen.append(("disconnected", str(args[3])))
        for n in range(3):  # packet ids 1..3 wait for their PUBACKs
            self.client.publish(f"out/{n}", b"o", qos=1)
        self.b.setblocking(False)
        self.b.recv(65536)  # what it sent is not the test's concern
        self.reader = LeanReader(self.client) if lean else None

    def _message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        expiry = getattr(msg.properties, "MessageExpiryInterval", None)
        users = getattr(msg.properties, "UserProperty", None)
        self.seen.append(
            (
                "message",
                msg._topic,
                msg.payload,
                msg.qos,
                msg.retain,
                msg.dup,
                msg.mid,
                expiry,
                users,
            )
        )

    def feed(self, data: bytes) -> None:
        self.b.sendall(data)
        self.pump()

    def pump(self) -> None:
        """Read as the session's reader does: on while bytes are held or the socket has
        some (or its end) to give."""
        for _ in range(10_000):
            if self.client._sock is None:
                return
            try:
                if self.reader is None:
                    self.client.loop_read()
                else:
                    self.reader.step()
            except Exception as exc:  # as the session's reader: the connection is broken
                self.seen.append(("raised", type(exc).__name__))
                return
            if self.reader is not None and self.reader():
                continue
            try:
                self.a.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return
            except OSError:
                pass

    def close(self) -> None:
        self.b.close()
        self.pump()
        self.a.close()


def through(protocol: MQTTProtocolVersion, lean: bool, pieces: Iterator[bytes]) -> list[Any]:
    peer = Peer(protocol, lean)
    for piece in pieces:
        if peer.client._sock is None:
            break
        peer.feed(piece)
    seen = list(peer.seen)
    peer.close()
    return seen


def cuts(data: bytes, every: int) -> Iterator[bytes]:
    for at in range(0, len(data), every):
        yield data[at : at + every]


@pytest.mark.parametrize("protocol", [V5, V311], ids=["5", "3.1.1"])
@pytest.mark.parametrize("every", [1, 2, 3, 7, 64, 100_000])
def test_lean_reads_see_what_paho_sees_however_the_bytes_are_cut(
    protocol: MQTTProtocolVersion, every: int
) -> None:
    data = good(protocol == V5)
    want = through(protocol, False, iter([data]))
    assert [s[0] for s in want].count("message") == 4, want  # QoS 2 waits for its PUBREL
    assert through(protocol, True, cuts(data, every)) == want


@pytest.mark.parametrize("protocol", [V5, V311], ids=["5", "3.1.1"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_frames_meet_paho_s_checks_unchanged(
    protocol: MQTTProtocolVersion, name: str
) -> None:
    """A malformed frame after good ones: the good ones are delivered, then whatever paho
    makes of it (the connection closed as a protocol error, or an exception the session's
    reader takes as a broken connection); never a crash of the reader itself."""
    data = good(protocol == V5) + HOSTILE[name] + puback(3)
    for every in (1, 5, len(data)):
        want = through(protocol, False, cuts(data, every))
        assert through(protocol, True, cuts(data, every)) == want, (name, every)


def test_the_end_of_the_connection_and_its_errors_reach_paho() -> None:
    """Bytes read ahead, then the end: paho still hears of it (on_disconnect)."""
    peer = Peer(V5, True)
    peer.feed(publish(b"t/a", b"1", props=b"\x00"))
    peer.close()
    assert peer.seen[0][:3] == ("message", b"t/a", b"1")
    assert peer.seen[-1][0] == "disconnected"
    assert peer.client._sock is None


def test_a_batch_publishes_as_paho_would() -> None:
    """``publish_batch`` queues the bytes paho's ``publish`` would, with the same packet
    ids taken from paho's counter, each held until its PUBACK."""
    lean_properties()
    expiry = Properties(PacketTypes.PUBLISH)
    expiry.MessageExpiryInterval = 30
    items = [(b"a/b", b"one", False, None), (b"c", b"two" * 100, True, expiry)]
    sent = []
    for lean in (False, True):
        a, b = socket.socketpair()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=V5)
        client._sock = a
        client.max_inflight_messages_set(0)
        if lean:
            mids = publish_batch(client, items)
        else:
            mids = [client.publish(t.decode(), p, 1, r, pr).mid for t, p, r, pr in items]
        assert mids == [1, 2]
        assert sorted(client._out_messages) == [1, 2]
        assert client._inflight_messages == 2
        b.setblocking(False)
        sent.append(b.recv(65536))
        a.close()
        b.close()
    assert sent[0] == sent[1]
    capped = paho.Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=V5)
    assert publish_batch(capped, items) is None, "no connection: paho's path says so"


@pytest.mark.broker
async def test_bursts_cut_anywhere_by_the_reads_all_arrive_once_in_order(
    make_session: Callable[..., Session], inbox: type[Inbox]
) -> None:
    """2,000 commands published at once (a 64 KB read holds a few hundred: the reads cut
    packets anywhere), handled once each in order by a session acking after its handler;
    then 600 messages handed over in one batch, every PUBACK counted."""
    handled = inbox()
    topic = T.cmd("window", "win-05")
    async with (
        make_session("coordinator", "coord", ack_after_handler=True, concurrency=256) as coord,
        make_session("window", "win-05") as pad,
    ):
        await coord.subscribe(T.every("cmd", "window"), handled)
        await coord.wait_connected(10)
        await pad.wait_connected(10)
        sent = [m.WindowAction(window=5, action="call") for _ in range(2000)]
        await asyncio.gather(*(pad.publish(topic, c) for c in sent))
        await handled.wait_for(lambda ps: len(ps) >= len(sent), timeout=60)
        assert [p.id for p in handled.payloads] == [c.id for c in sent]
        batch = [(T.event("call"), m.CallEvent(ticket="A001", service="s", window=5, zone="z"))]
        handed = coord.hand_over(batch * 600)
        async with asyncio.timeout(30):
            await handed.acked()
        assert handed.left == 0


@pytest.mark.broker
async def test_a_batch_handed_over_now_is_written_before_the_loop_runs_again(
    make_session: Callable[..., Session], mosquitto: Mosquitto
) -> None:
    """A quiet hall's CALL: its group's messages leave as hand_over returns, not two loop
    passes later. The loop is held here, so only a write made already can arrive."""
    subscribed, arrived = threading.Event(), threading.Event()
    board = paho.Client(CallbackAPIVersion.VERSION2, client_id="board", protocol=V5)
    board.on_subscribe = lambda *_: subscribed.set()
    board.on_message = lambda *_: arrived.set()
    board.connect("127.0.0.1", mosquitto.port)
    board.subscribe(T.event("call"), qos=1)
    board.loop_start()
    try:
        assert subscribed.wait(10)
        async with make_session("coordinator", "coord") as coord:
            await coord.wait_connected(10)
            event = m.CallEvent(ticket="A001", service="s", window=5, zone="z")
            coord.hand_over([(T.event("call"), event)], now=True)
            assert arrived.wait(10), "not written until the loop ran again"
    finally:
        board.loop_stop()
        board.disconnect()


@pytest.mark.broker
async def test_a_batch_written_at_once_leaves_no_writer_behind(
    make_session: Callable[..., Session],
) -> None:
    """paho asks for a writer, the batch is written at once and paho takes the wish back,
    then the deferred registration runs: it must not leave the loop watching a socket
    with nothing to write (it spun at ~30,000 passes a second, idle)."""
    async with make_session("coordinator", "coord") as coord:
        await coord.wait_connected(10)
        assert coord._client is not None
        sock = coord._client._client._sock
        assert sock is not None
        event = m.CallEvent(ticket="A001", service="s", window=5, zone="z")
        handed = coord.hand_over([(T.event("call"), event)], now=True)
        async with asyncio.timeout(10):
            await handed.acked()
        for _ in range(3):  # the deferred registration has run by now
            await asyncio.sleep(0)
        key = asyncio.get_running_loop()._selector.get_key(sock.fileno())  # type: ignore[attr-defined]
        assert not key.events & selectors.EVENT_WRITE
