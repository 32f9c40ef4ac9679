"""The hall's side of the live city view: ``hallq bridge``, a process of its own between
the hall's broker and the city broker.

Outbound it forwards only the coordinator's public summaries: each service's queue
(waiting, next numbers, expected wait), the day's KPIs, the comfort index and each window's
state (open, paused, closed; the ticket number it serves). Nothing else crosses: no
command, request or reply (so the city can never act in a hall), no device presence or
health, no events, and nothing carrying an identity (the identity hashes live only in
ticket requests and the event log). The city broker's per-hall user may publish only under
its own hall's ``state`` subtree (``nats_user`` writes that rule), so a misconfigured or
stolen hall credential cannot speak for another hall.

Inbound it brings back only the queue summaries of the halls the hall file lists as nearby
(``[city] nearby``), under the hall's own ``city/{nearby}/queue/{service}``
(``hallq.topics``), and keeps ``city/link`` at 1 while it is connected to the city and 0
while not (its will says 0 if the process dies); the coordinator suggests a quieter nearby
hall from them on the ticket and booking pages, only while the link is up.

Why a process and not Mosquitto's own bridge (what this module generated before): Debian
12's Mosquitto 2.0.11 hung for good, spinning in its keepalive check, after its bridge
reconnected over a flapping link, in 3 of 5 five-cut runs of the fault suite
(BENCHMARKS.md, "The city bridge out of the hall broker"). A hung hall broker stops every
key press of the hall, and nothing at the city level may be on that path. Here a WAN flap
can only hurt this process; the hall broker sees one ordinary client.

The summaries are state: the bridge keeps the latest payload of each (a few dozen topics)
and, on every connection to the city, sends them all, then each change as it comes; while
the city is away changes only replace the kept payload, so a long outage costs no memory
and nothing stale is replayed. It moves along the city nodes' ``address`` list in order
when one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from hallq.acl import CITY_BRIDGE as CITY_BRIDGE_LOGIN
from hallq.aio import backoff_delay
from hallq.bus import broker_client, socket_closer, tls_context
from hallq.config import BrokerConfig
from hallq.topics import HallTopics

log = logging.getLogger("hallq.city.bridge")

CITY_BRIDGE = CITY_BRIDGE_LOGIN  # its login and client id on the hall broker (provisioned)

# (topic under the hall's root, what it carries); the only topics that leave the hall
PUBLIC_SUMMARIES: tuple[tuple[str, str], ...] = (
    ("state/queue/+", "each service's queue: waiting, next numbers, expected wait"),
    ("state/stats", "the day's KPIs per service and window"),
    ("state/comfort", "the comfort index forecast"),
    ("state/window/+", "each window's status and the ticket number it serves"),
)


class BridgeError(ValueError):
    """The bridge cannot be generated as asked; the message names the option at fault."""


@dataclass(frozen=True)
class CityBroker:
    addresses: list[str]  # host:port of every city node (MQTT over TLS)
    cafile: Path
    username: str
    password: str = field(repr=False)
    certfile: Path | None = None
    keyfile: Path | None = None
    tls: bool = True  # False only for tests on loopback


def _hostport(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BridgeError(f"--city {text!r}: give each city node as host:port")
    return f"{host}:{port}"


def city_broker(
    addresses: str,
    *,
    cafile: Path | None,
    username: str,
    password: str,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    tls: bool = True,
) -> CityBroker:
    nodes = [_hostport(a) for a in addresses.split(",") if a.strip()]
    if not nodes:
        raise BridgeError("--city: no city node given")
    if tls and cafile is None:
        raise BridgeError("--cafile: the city's CA certificate is needed to verify the link")
    if (certfile is None) != (keyfile is None):
        raise BridgeError("--certfile and --keyfile go together")
    if not password or any(c.isspace() for c in password):
        raise BridgeError("the bridge password is empty or contains spaces")
    return CityBroker(nodes, cafile or Path(), username, password, certfile, keyfile, tls)


def outbound_filters(hall_id: str) -> list[str]:
    """The hall broker's topics the bridge forwards to the city (the public summaries)."""
    base = HallTopics(hall_id).base
    return [f"{base}/{t}" for t, _ in PUBLIC_SUMMARIES]


def inbound_routes(hall_id: str, nearby: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(city filter, local prefix) per nearby hall: its queue summaries on the city broker
    and where they land under this hall's ``city/`` subtree."""
    topics = HallTopics(hall_id)
    return [
        (f"{HallTopics(other).base}/state/queue/+", topics.city_prefix(other) + "queue/")
        for other in nearby
    ]


class _LocalLost(Exception):
    """The hall broker went while the city connection was being served."""


class CityBridge:
    """The bridge process's work: one client on the hall broker (``hall_broker``, logged in
    as ``CITY_BRIDGE``), one on a city node at a time. ``run`` returns only when ``stop``
    is set; every failure of either side ends in a new attempt."""

    def __init__(
        self,
        hall_id: str,
        hall_broker: BrokerConfig,
        city: CityBroker,
        nearby: Sequence[str] = (),
        *,
        retry_initial: float = 0.5,
        retry_cap: float = 5.0,
    ) -> None:
        self.hall_id = hall_id
        self.topics = HallTopics(hall_id)
        self.hall_broker = hall_broker
        self.city = city
        self.nearby = list(nearby)
        self.retry_initial = retry_initial
        self.retry_cap = retry_cap  # a city of 1,000 halls retrying: ~200 attempts/s at worst
        self.latest: dict[str, bytes] = {}  # public summary topic -> its latest payload
        self._dirty: dict[str, bytes] = {}  # what the city has not been sent yet
        self._wake = asyncio.Event()
        self.connected_to: str | None = None  # the city node, while connected
        self.connections: list[str] = []  # the city nodes connected to, in order
        self.link_changes: list[tuple[float, bool]] = []  # (monotonic time, up), for tests
        self._link_changed = asyncio.Event()

    # --- the hall side -----------------------------------------------------------------

    def _local_client(self) -> aiomqtt.Client:
        broker = self.hall_broker.for_client(CITY_BRIDGE)
        protocol = (
            aiomqtt.ProtocolVersion.V311
            if broker.protocol == "3.1.1"
            else aiomqtt.ProtocolVersion.V5
        )
        will = aiomqtt.Will(self.topics.city_link(), b"0", qos=1, retain=True)
        return broker_client(broker, CITY_BRIDGE, protocol, timeout=10, will=will)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        failures = 0
        while not stop.is_set():
            client = self._local_client()
            close_socket = socket_closer(client)
            stopped = False
            try:
                async with client:
                    failures = 0
                    log.info("city bridge: connected to the hall broker %s", self.hall_broker.url)
                    # the retained summaries come again on subscribing; one cleared while
                    # the hall broker was away must not linger here
                    self.latest.clear()
                    await self._set_link(client, False)
                    await client.subscribe([(f, 1) for f in outbound_filters(self.hall_id)])
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._read_hall(client))
                        tasks.create_task(self._serve_city(client))
                        tasks.create_task(self._stop_when(stop, client))
            except* _Stopped:
                stopped = True
            except* (aiomqtt.MqttError, _LocalLost) as group:
                log.warning("city bridge: lost the hall broker %s: %s", self.hall_broker.url, group)
            finally:
                close_socket()
                _retrieve_disconnect(client)
                self.connected_to = None
            if stopped:
                return
            failures += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff_delay(failures, self.retry_initial, 5.0)):
                    await stop.wait()

    async def _stop_when(self, stop: asyncio.Event, local: aiomqtt.Client) -> None:
        """On ``stop``: the link is 0 (a clean disconnect sends no will), then the end."""
        await stop.wait()
        with contextlib.suppress(aiomqtt.MqttError, _LocalLost, TimeoutError):
            async with asyncio.timeout(5):
                await self._set_link(local, False)
        raise _Stopped

    @property
    def link_up(self) -> bool:
        return bool(self.link_changes) and self.link_changes[-1][1]

    async def wait_link(self, up: bool) -> None:
        """Until the link notice says ``up`` (for tests and benches; bound it yourself)."""
        while self.link_up != up:
            self._link_changed.clear()
            await self._link_changed.wait()

    async def _set_link(self, local: aiomqtt.Client, up: bool) -> None:
        self.link_changes.append((time.monotonic(), up))
        self._link_changed.set()
        try:
            await local.publish(self.topics.city_link(), b"1" if up else b"0", 1, retain=True)
        except aiomqtt.MqttError as exc:
            raise _LocalLost(str(exc)) from exc

    async def _read_hall(self, local: aiomqtt.Client) -> None:
        """Every public summary the hall broker has (retained first), kept as the latest
        and marked for the city."""
        filters = outbound_filters(self.hall_id)
        async for message in local.messages:
            topic = message.topic.value
            if not any(message.topic.matches(f) for f in filters):
                continue  # (none expected: only these are subscribed)
            payload = bytes(message.payload) if message.payload is not None else b""
            if payload:
                self.latest[topic] = payload
            else:
                self.latest.pop(topic, None)  # a cleared retained summary is cleared there too
            self._dirty.pop(topic, None)  # (moved to the end: the newest goes last)
            self._dirty[topic] = payload
            self._wake.set()
        raise _LocalLost("the hall broker's message stream ended")

    # --- the city side -----------------------------------------------------------------

    def _city_client(self, address: str) -> aiomqtt.Client:
        host, _, port = address.rpartition(":")
        context = (
            tls_context(self.city.cafile, self.city.certfile, self.city.keyfile)
            if self.city.tls
            else None
        )
        return aiomqtt.Client(
            host,
            int(port),
            identifier=f"hallq-bridge-{self.hall_id}",
            username=self.city.username,
            password=self.city.password,
            protocol=aiomqtt.ProtocolVersion.V311,  # NATS speaks MQTT 3.1.1
            tls_context=context,
            keepalive=15,
            clean_session=True,
            timeout=10,
        )

    async def _serve_city(self, local: aiomqtt.Client) -> None:
        """City nodes in order, each until it fails; the link state follows."""
        failures = 0
        while True:
            for address in self.city.addresses:
                client = self._city_client(address)
                close_socket = socket_closer(client)
                try:
                    async with client:
                        failures = 0
                        await self._serve_node(local, client, address)
                except* aiomqtt.MqttError as group:
                    log.info("city bridge: city node %s: %s", address, group.exceptions[0])
                finally:
                    close_socket()
                    _retrieve_disconnect(client)
                    if self.connected_to is not None:
                        self.connected_to = None
                        log.warning("city bridge: lost the city node %s", address)
                        await self._set_link(local, False)
            failures += 1
            await asyncio.sleep(backoff_delay(failures, self.retry_initial, self.retry_cap))

    async def _serve_node(self, local: aiomqtt.Client, city: aiomqtt.Client, address: str) -> None:
        routes = inbound_routes(self.hall_id, self.nearby)
        if routes:
            await city.subscribe([(f, 0) for f, _ in routes])
        self.connected_to = address
        self.connections.append(address)
        log.info("city bridge: connected to the city node %s", address)
        self._dirty = {**self.latest, **self._dirty}  # everything the city may have missed
        self._wake.set()
        await self._set_link(local, True)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._send_out(city))
            # (always: reading is what notices a connection lost while nothing is sent)
            tasks.create_task(self._bring_in(local, city, routes))

    async def _send_out(self, city: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                topic = next(iter(self._dirty))
                payload = self._dirty.pop(topic)
                try:
                    await city.publish(topic, payload, qos=1, retain=True)
                except aiomqtt.MqttError:
                    self._dirty.setdefault(topic, payload)  # unless a newer one came meanwhile
                    raise

    async def _bring_in(
        self, local: aiomqtt.Client, city: aiomqtt.Client, routes: list[tuple[str, str]]
    ) -> None:
        async for message in city.messages:
            for city_filter, prefix in routes:
                if message.topic.matches(city_filter):
                    service = message.topic.value.rsplit("/", 1)[1]
                    try:
                        await local.publish(
                            prefix + service, message.payload, 1, retain=message.retain
                        )
                    except aiomqtt.MqttError as exc:
                        raise _LocalLost(str(exc)) from exc
                    break
        raise aiomqtt.MqttError("the city node's message stream ended")


def _retrieve_disconnect(client: aiomqtt.Client) -> None:
    """aiomqtt keeps a lost connection's error in a future that its exit, after a loss,
    never reads; read here, or asyncio logs "Future exception was never retrieved"."""
    gone = client._disconnected
    if gone.done() and not gone.cancelled():
        gone.exception()


class _Stopped(Exception):
    """``run``'s stop was set (ends its task group)."""


def _subject(topic: str) -> str:
    return topic.replace("/", ".").replace("+", "*")  # MQTT `/` and `+` are NATS `.` and `*`


def nats_user_entry(
    hall_id: str, username: str, password: str, nearby: Sequence[str] = ()
) -> dict[str, Any]:
    """The city NATS server's ``authorization.users`` entry for one hall's bridge: it may
    publish its own hall's summaries and nothing else, and read the queue summaries of its
    nearby halls and nothing else."""
    publish = _subject(HallTopics(hall_id).base) + ".state.>"
    reads = [_subject(HallTopics(other).base) + ".state.queue.*" for other in nearby]
    return {
        "user": username,
        "password": password,
        "permissions": {
            "publish": {"allow": [publish, "$MQTT.>"]},
            "subscribe": {"allow": [*reads, "$MQTT.>", "_INBOX.>"]},
        },
    }


def nats_user(hall_id: str, username: str, password_hash: str, nearby: Sequence[str] = ()) -> str:
    """``nats_user_entry`` as JSON for the city's NATS configuration. ``password_hash``:
    a bcrypt hash (``nats server passwd``), never the password."""
    return json.dumps(nats_user_entry(hall_id, username, password_hash, nearby), indent=2)
