"""A batch of QoS 1 PUBLISHes queued in paho as one write (the coordinator's replies,
events and states of a command group). Apart from ``hallq.paho_lean`` so that a Pi's
agent, which publishes one message at a time, never loads it (its RSS is held under
40 MB, issue 13). paho is pinned to 2.2.x (pyproject) because this reaches into its
internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paho.mqtt.client import MQTTMessage, MQTTMessageInfo, mqtt_ms_wait_for_puback, time_func
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties

from hallq.paho_lean import PUBLISH_HEADER

__all__ = ["publish_batch"]


class _HandedInfo(MQTTMessageInfo):
    """The ``info`` of a message published by :func:`publish_batch`: marked published by
    its PUBACK like paho's, without a ``threading.Condition`` per message (its owner
    awaits the batch's ``Handed``, never ``wait_for_publish``)."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:
        self.mid = mid
        self._published = False
        self._iterpos = 0
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS

    def _set_as_published(self) -> None:
        self._published = True

    def wait_for_publish(self, timeout: float | None = None) -> None:
        raise RuntimeError("a batch publish is waited for by its Handed, not by paho")


def remaining_length(size: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | 128 if size else byte)
        if not size:
            return bytes(out)


def publish_batch(
    paho_client: Any, items: Sequence[tuple[bytes, bytes, bool, Properties | None]]
) -> list[int] | None:
    """QoS 1 PUBLISHes (topic, payload, retain, properties), in this order, as paho's
    ``publish`` would queue them (each in paho's ``_out_messages`` until its PUBACK, its
    packet id from paho's counter), but built here and queued as one write: paho's
    ``publish`` checks and builds each with several layers (a topic check, an
    ``MQTTMessageInfo`` with its ``Condition``, a debug line, a packet assembled field by
    field), ~25 µs a message for the ~5 a coordinator sends per command. Returns the
    packet ids, or None (nothing queued) where paho's own path must decide: no connection,
    a cap on messages in flight or queued, a packet id still in use."""
    paho = paho_client
    if (
        paho._sock is None
        or paho._max_inflight_messages
        or paho._max_queued_messages
        or paho._callback_api_version is not CallbackAPIVersion.VERSION2
    ):
        return None
    v5 = paho._protocol == MQTTProtocolVersion.MQTTv5.value
    out = paho._out_messages
    mids: list[int] = []
    packets: list[bytes] = []
    now = time_func()
    for topic, payload, retain, properties in items:
        mid = paho._mid_generate()
        if mid in out or mid in mids:
            return None
        mids.append(mid)
        props = (b"\x00" if properties is None else properties.pack()) if v5 else b""
        body = b"".join(
            (len(topic).to_bytes(2, "big"), topic, mid.to_bytes(2, "big"), props, payload)
        )
        packets.append(bytes((PUBLISH_HEADER | 0x02 | retain,)))
        packets.append(remaining_length(len(body)))
        packets.append(body)
    for mid, (topic, payload, retain, properties) in zip(mids, items, strict=True):
        message = MQTTMessage.__new__(MQTTMessage)
        message.mid = mid
        message._topic = topic
        message.info = _HandedInfo(mid)
        message.timestamp = now
        message.payload = payload
        message.qos = 1
        message.retain = retain
        message.dup = False
        message.properties = properties
        message.state = mqtt_ms_wait_for_puback
        out[mid] = message
    paho._inflight_messages += len(mids)
    if mids:
        paho._packet_queue(PUBLISH_HEADER | 0x02, b"".join(packets), mids[0], 1, None)
    return mids
