"""The MQTT session every hallq process uses: presence, reconnect, outbox, routing, requests.

aiomqtt 2.x gives one connection; this wraps it into what a service needs to stay up for
months: it reconnects forever with jittered backoff, re-subscribes and re-announces itself
each time, keeps a persistent broker session, holds queueable publishes in a SQLite outbox
while the broker is away, and survives any bad message (logged and reported on its error
topic). QoS, retain and expiry of every publish come from :mod:`hallq.contract`.

With ``ack_after_handler`` a QoS 1 message is acknowledged (PUBACK) only once its handlers
have returned, not when it arrives: a process that dies while a message is in flight gets
it again from its persistent broker session on the next connect (see ``docs/delivery.md``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import math
import random
import select
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel

from hallq import __version__
from hallq.aio import backoff_delay, cancel_and_wait
from hallq.contract import TopicSpec, spec_for
from hallq.errors import (
    ConfigError,
    NotConnected,
    NotKept,
    PayloadError,
    RequestTimeout,
    TopicError,
)
from hallq.logsetup import escape_controls, redact
from hallq.messages import (
    ErrorReport,
    Message,
    Presence,
    RejectCode,
    Reply,
    Retained,
    decode,
    encode,
)
from hallq.paho_lean import (
    FixedProperties,
    buffered_reads,
    coalesce_writes,
    lean_properties,
    lean_pubacks,
)
from hallq.retained import PresenceBook, RevisionGate
from hallq.session_store import SessionStore
from hallq.sqlite import unwritable_reason
from hallq.topics import (
    Action,
    HallTopics,
    Role,
    TopicParts,
    check_filter,
    check_id,
    matches,
    parse,
)

if TYPE_CHECKING:
    from hallq.config import BrokerConfig

log = logging.getLogger("hallq.bus")

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
ROUTE_CACHE = 4096  # topics whose handlers are remembered
PROTOCOLS = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}
PROBE_EVERY_S = 1.0  # while backing off, how often the broker's port is tried
READ_PER_PASS = 1000  # packets read from the socket per wake-up of the event loop, at most
# connections lost this soon after they were made, this many times within the window: said
# once (then at most every SHARED_ID_REPEAT_S) to be what two clients with one id look like
SHORT_LIVED_S = 10.0
SHARED_ID_LOSSES = 3
SHARED_ID_WINDOW_S = 60.0
SHARED_ID_REPEAT_S = 600.0
SHARED_ID_CLEAR_S = 60.0  # a connection kept this long since: no other client uses the id now


@dataclass(frozen=True, slots=True)
class Incoming:
    """A validated message handed to a route's handler."""

    topic: str
    parts: TopicParts
    payload: Any
    retained: bool
    waited_s: float | None = None
    """None: it came live. Otherwise it waited at the broker for this client (it arrived
    before the client's own birth came back on a new connection), for at most this long by
    the receiver's own clock (inf when unknown, e.g. across a restart)."""
    expiry_left_s: int | None = None
    """MQTT 5: what the broker left of the sender's message expiry (the broker judged it)."""
    held_s: float = 0.0
    """How long it waited in this process before its handler ran (behind slower ones)."""
    arrived_at: float | None = None
    """``time.monotonic()`` when it arrived (at the earliest: the process's own stalls
    count). Like ``waited_s`` and ``expiry_left_s`` it is fixed in paho's callback, when the
    message is read, not when its handler runs: under concurrent dispatch, a backlog or a
    busy loop, a deadline judged from these still counts every wait."""


@dataclass(frozen=True, slots=True)
class _Arrival:
    """A message's age facts, taken in paho's callback (see ``Incoming``)."""

    at: float
    waited_s: float | None
    expiry_left_s: int | None


Handler = Callable[[Incoming], Awaitable[None] | None]


class Handed:
    """Messages handed to paho together (``Session.hand_over``), and the PUBACKs they
    wait for, counted down: aiomqtt's on_publish calls ``set()`` on what it holds for a
    PUBACK's packet id, and every message of the batch holds this one (one future per
    batch, not an event and a task per message)."""

    __slots__ = ("client", "done", "left", "mids", "timeout")

    def __init__(self, done: asyncio.Future[None], client: aiomqtt.Client, timeout: float) -> None:
        self.done = done
        self.client = client
        self.timeout = timeout
        self.mids: list[int] = []
        self.left = 0

    def set(self) -> None:
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)

    async def acked(self) -> None:
        """Every PUBACK is in; NotConnected when the connection dropped first or the
        broker did not answer within the session's operation timeout."""
        if self.done.done():
            return
        try:
            await asyncio.wait(
                (self.done, self.client._disconnected),
                timeout=self.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if not self.done.done():
                self.done.cancel()
                pending = self.client._pending_publishes
                for mid in self.mids:
                    pending.pop(mid, None)
        if self.done.cancelled():
            raise NotConnected(f"{self.left} message(s) not acknowledged by the broker")


def _settled(gone: asyncio.Future[None]) -> None:
    """A client's disconnect marked seen now or whenever it comes: the session logs the
    loss from the error that ends the connection, and awaits the future where it needs to
    (awaiting it still raises). Unseen, asyncio logs "Future exception was never
    retrieved" at some later garbage collection, an ERROR in whatever runs then (a
    connection taken over by a clone; a loss between the CONNACK and the end of aiomqtt's
    ``__aenter__``, which replaces the future with a fresh one)."""

    def seen(future: asyncio.Future[None]) -> None:
        if not future.cancelled():
            future.exception()

    if gone.done():
        seen(gone)
    else:
        gone.add_done_callback(seen)


def _expiry_left(message: Any) -> int | None:  # aiomqtt's or paho's message
    left = getattr(message.properties, "MessageExpiryInterval", None)
    return left if isinstance(left, int) else None


class ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho drops such a socket without closing it,
    and a client retrying a misconfigured broker for hours must not pile up descriptors."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(
    cafile: Path | None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    *,
    insecure: bool = False,
) -> ssl.SSLContext:
    """Every MQTT client's TLS (the hall broker's, the city's): with the socket that
    closes itself on a failed handshake."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if certfile:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.sslsocket_class = ClosingSSLSocket
    return context


def broker_tls_context(broker: BrokerConfig) -> ssl.SSLContext | None:
    """The TLS a client of the hall broker uses (None: plain MQTT); also the watchdog's."""
    if not broker.use_tls:
        return None
    tls = broker.tls
    return tls_context(tls.ca_file, tls.cert_file, tls.key_file, insecure=tls.insecure)


PENDING_CALLS_WARN = 5000


def socket_closer(client: aiomqtt.Client) -> Callable[[], None]:
    """A function that closes ``client``'s socket, for when a connection attempt ends.

    aiomqtt leaves the socket open (and watched by the event loop) when its connect is
    cancelled (a session closed while the broker has not answered) or times out waiting
    for the CONNACK: each such attempt kept a descriptor until the broker hung up, or until
    the garbage collector found it after the loop had gone. A connect still running in
    aiomqtt's thread when the attempt is abandoned closes its socket itself, on the loop."""
    paho_client = client._client
    connect = client._client_connect
    loop = asyncio.get_running_loop()
    lock = threading.Lock()
    state = {"connecting": False, "abandoned": False}

    def close_on_loop() -> None:
        try:
            loop.call_soon_threadsafe(paho_client._sock_close)
        except RuntimeError:  # the loop is closed: nothing watches the socket any more
            sock, paho_client._sock = paho_client._sock, None
            if sock is not None:
                sock.close()

    def connecting() -> None:
        with lock:
            state["connecting"] = True
        try:
            connect()
        finally:
            with lock:
                state["connecting"] = False
                if state["abandoned"]:
                    close_on_loop()

    def abandon() -> None:
        with lock:
            state["abandoned"] = True
            if state["connecting"]:
                return  # closed by ``connecting`` when paho's connect returns
        paho_client._sock_close()

    client._client_connect = connecting  # type: ignore[method-assign]
    return abandon


def broker_client(
    broker: BrokerConfig,
    identifier: str,
    protocol: aiomqtt.ProtocolVersion,
    *,
    timeout: float,
    keepalive: int | None = None,
    **options: Any,
) -> aiomqtt.Client:
    """Every aiomqtt client hallq makes: the hall file's broker, credentials and TLS (with
    the socket that closes itself on a failed handshake); ``options`` add the session's
    will, clean-start and properties."""
    lean_pubacks()
    lean_properties()
    password = broker.password.get_secret_value() if broker.password is not None else None
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=identifier,
        username=broker.username,
        password=password,
        protocol=protocol,
        keepalive=broker.keepalive if keepalive is None else keepalive,
        tls_context=broker_tls_context(broker),
        timeout=timeout,
        **options,
    )
    # aiomqtt warns on every publish past 10 in flight; a reconnect's republish of the whole
    # hall sends hundreds at once by design, and the outbox bounds what is really pending.
    client.pending_calls_threshold = PENDING_CALLS_WARN
    coalesce_writes(client._client)
    return client


@functools.cache
def _payload_classes(payload_type: Any) -> tuple[type, ...]:
    target = getattr(payload_type, "__value__", payload_type)
    if get_origin(target) is Annotated:
        target = get_args(target)[0]
    return get_args(target) or (target,)


def _may_be_protocol_refusal(error: BaseException) -> bool:
    """True unless the socket itself failed (refused, TLS, DNS: an OSError behind aiomqtt's
    MqttError) or the broker refused the credentials; then trying MQTT 3.1.1 is pointless.
    A broker that ignores an MQTT 5 CONNECT (amqtt) shows up as a CONNACK timeout."""
    cause = error.__context__
    if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
        return False
    if isinstance(error, MqttConnectError):
        return "protocol" in str(error).lower()
    return isinstance(error, aiomqtt.MqttError)


def _login_refused(error: BaseException | None) -> bool:
    """The broker answered and refused this login (bad user name or password, not
    authorised): MQTT 5 reason 134/135, MQTT 3.1.1 return code 4/5."""
    if not isinstance(error, MqttConnectError):
        return False
    rc = getattr(error, "rc", None)
    return getattr(rc, "value", rc) in (4, 5, 134, 135)


class Session:
    """One client's connection to the hall broker. Use as ``async with Session(...)``.

    ``ack_after_handler``: acknowledge each QoS>=1 message only after :meth:`_dispatch`
    has finished with it (its handlers returned, or it was rejected and reported), instead
    of paho's default of acknowledging on arrival. Messages are dispatched one at a time in
    arrival order, so the acknowledgements leave in that order too (MQTT 3.1.1 §4.6). A
    message whose handling is interrupted (the process dies, the session is closed or
    cancelled mid-handler, the connection drops with it still queued) is not acknowledged,
    and the broker delivers it again when this client id reconnects: handlers must be
    idempotent on the message id. Register routes before the first connect: a redelivered
    message with no route is acknowledged and dropped like any other.

    ``concurrency``: how many messages may be in their handlers at once (default 1, one
    at a time). Above 1 each message's handling is a task, started in arrival order (so a
    handler's synchronous part runs in arrival order), and acknowledgements still leave in
    arrival order: a message is acknowledged once it and every one before it are done.
    The coordinator uses this so that commands arriving together share one fsync.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        hall: str,
        role: Role | str,
        client_id: str,
        state_dir: Path,
        outbox_max: int = 10_000,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
        op_timeout: float = 5.0,
        ack_after_handler: bool = False,
        drain_per_s: float | None = None,
        stall_beat_s: float | None = None,
        concurrency: int = 1,
        credentials: Callable[[], BrokerConfig] | None = None,
    ) -> None:
        self.broker = broker
        # how the login is read again (its provisioned password file) when the broker
        # refuses it: a fixed or rotated password counts without a restart
        self._credentials = credentials
        self.concurrency = max(1, concurrency)
        # a message read after this process stood still (a long step on the event loop,
        # a starved CPU) waited in the socket meanwhile: with a heartbeat this often, its
        # arrival is stamped from when the loop stopped, so a deadline counts that wait
        self._stall_beat_s = stall_beat_s
        self._beat = time.monotonic()
        # the outbox drains at most this fast: the coordinator drops what a client sends
        # beyond its rate limit, and a dispenser's offline issues must all arrive
        self.drain_per_s = drain_per_s
        self.ack_after_handler = ack_after_handler
        self.role = Role(role)
        self.client_id = check_id(client_id, "client id")
        self.topics = HallTopics(hall)
        self.status_topic = self.topics.status(self.role, client_id)
        self.error_topic = self.topics.error(self.role, client_id)
        self.reply_topic = self.topics.reply(self.role, client_id) if self._has_replies() else None
        self._state_path = Path(state_dir) / f"session-{hall}-{client_id}.sqlite"
        self._outbox_max = outbox_max
        self._backoff = (backoff_initial, backoff_max)
        self._op_timeout = op_timeout
        self._routes: list[tuple[str, Handler]] = []
        self._handlers: dict[str, list[Handler]] = {}  # topic -> its routes' handlers
        self._parsed: dict[str, tuple[TopicParts, TopicSpec]] = {}  # of routed topics
        self._specs: dict[str, TopicSpec] = {}
        self._expiry: dict[int, Properties] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._revisions = RevisionGate()
        self._presence = PresenceBook()
        self._store: SessionStore | None = None
        self._client: aiomqtt.Client | None = None
        self._write_now: tuple[aiomqtt.Client, Callable[[], None]] | None = None
        self._protocol: aiomqtt.ProtocolVersion | None = None
        self._boot = 0
        self._rev_counter = 0
        self._connected = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connects = 0
        self.attempts = 0
        self.unacked = 0  # messages left unacknowledged (NotKept) on the current connection
        self._arrivals: dict[int, _Arrival] = {}  # mid -> its age facts when paho read it
        self._down_since: float | None = None  # time.monotonic() the last connection ended
        self._up_since = 0.0  # time.monotonic() the current connection came up
        self._short_lived: list[float] = []  # when connections that lasted < SHORT_LIVED_S ended
        self._shared_id_said = -math.inf
        self._shared_id = False  # connections keep being taken over (another client, our id)
        self._state_error: str | None = None  # even its copy in memory failed (see state_error)
        self._attempt_failed = False  # an attempt to connect failed since the last connection
        self._broker_was_away = False  # ... before the current one
        self._shared_id_hooks: list[Callable[[bool], Awaitable[None] | None]] = []
        self._birth, self._birth_id = b"", ""  # this connection's birth, as published
        self._connect_hooks: list[Callable[[], Awaitable[None]]] = []
        # Asked with the topic of each routed message before it is parsed or validated;
        # False drops it unanswered (the coordinator's per-client rate limit).
        self.admit: Callable[[str], bool] | None = None

    def _has_replies(self) -> bool:
        from hallq.contract import CLIENT_TOPICS

        return self.role in CLIENT_TOPICS[Action.REPLY].roles

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        self._store = SessionStore(self._state_path, max_items=self._outbox_max)
        self._runner = asyncio.create_task(self._run(), name=f"hallq-session-{self.client_id}")
        if self._stall_beat_s is not None:
            self._spawn(self._heartbeat(self._stall_beat_s))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Announce ``offline`` (retained) and disconnect cleanly, leaving no will behind."""
        if self._closing:
            return
        self._closing = True
        client = self._client
        tasks = [t for t in (self._drainer, self._runner, *self._tasks) if t is not None]
        try:
            if client is not None and self._connected.is_set():
                try:
                    await client.publish(
                        self.status_topic,
                        self._presence_payload("offline"),
                        qos=1,
                        retain=True,
                        timeout=self._op_timeout,
                    )
                except aiomqtt.MqttError as exc:
                    log.warning("%s: could not publish offline status: %s", self.client_id, exc)
        finally:
            # cancelled while closing, the tasks must still end: a second close() returns
            # at once, and a session task left running would outlive its owner
            for task in tasks:
                task.cancel()
        for task in tasks:
            await cancel_and_wait(task)
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s: session task ended with %r", self.client_id, task.exception())
        for future in self._pending.values():
            future.cancel()
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _heartbeat(self, every: float) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(every)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def link_up(self) -> bool:
        """The connection is there, even by what paho has seen and this session not yet
        (``connected`` follows only once the message loop notices)."""
        return self._live_client() is not None

    @property
    def boot(self) -> int:
        return self._boot

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109  public API: the caller bounds each wait
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    @property
    def outbox_size(self) -> int:
        return len(self._store) if self._store is not None else 0

    def next_rev(self) -> int:
        """A revision for state this client publishes: boot in the high bits, so it keeps
        rising across restarts without a clock."""
        self._rev_counter += 1
        return (self._boot << 32) | self._rev_counter

    # --- connection loop ------------------------------------------------------------------

    def _presence_payload(self, state: Literal["online", "offline"]) -> bytes:
        presence = Presence(
            state=state,
            boot=self._boot,
            role=self.role.value,
            client=self.client_id,
            version=__version__,
        )
        data = encode(presence)
        if state == "online":  # this connection's birth: what follows it came live
            self._birth, self._birth_id = data, presence.id
        return data

    def _protocol_candidates(self) -> list[aiomqtt.ProtocolVersion]:
        if self._protocol is not None:
            return [self._protocol]
        wanted = self.broker.protocol
        if wanted == "auto":
            return [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311]
        return [PROTOCOLS[wanted]]

    def _make_client(self, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        broker = self.broker
        v5 = protocol is aiomqtt.ProtocolVersion.V5
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = broker.session_expiry_s
        client = broker_client(
            broker,
            self.client_id,
            protocol,
            timeout=self._op_timeout,
            will=aiomqtt.Will(self.status_topic, self._presence_payload("offline"), 1, True),
            clean_session=None if v5 else False,
            clean_start=False if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            socket_options=NODELAY,
            logger=logging.getLogger("hallq.mqtt"),
        )
        # aiomqtt does not expose paho's manual acknowledgement; set it before connecting
        client._client.manual_ack_set(self.ack_after_handler)
        if self.concurrency > 1:
            # paho holds back QoS 1 publishes past 20 awaiting their PUBACK: a process
            # answering many messages at once would wait a round trip per 20 of them
            client._client.max_inflight_messages_set(0)
        self._birth, self._birth_id = b"", ""  # (made before connecting: the will is no birth)
        deliver = client._client.on_message
        assert deliver is not None, "aiomqtt routes paho's messages through on_message"
        arrivals = self._arrivals = {}

        beat = self._stall_beat_s
        opened = time.monotonic()  # nothing came on this connection before it was made
        # what the broker held for us while we were away waited at most this long before
        # this connection (unknown across a restart)
        away = opened - self._down_since if self._down_since is not None else math.inf
        live = False  # our own birth came back: what follows did not wait at the broker

        def stamped(paho: Any, userdata: Any, message: Any) -> None:
            # Everything a deadline is judged by is fixed here, as the message is read:
            # later it may wait in aiomqtt's queue, for a dispatch slot or for the engine.
            nonlocal live
            if message.mid:
                now = time.monotonic()
                if beat is not None:  # since the loop last stood still, at the earliest
                    now = max(opened, min(now, self._beat + beat))
                waited = None if live else away + (now - opened)
                arrivals[message.mid] = _Arrival(now, waited, _expiry_left(message))
            if not live and message.topic == self.status_topic:
                live = self._is_own_birth(message.payload)
            deliver(paho, userdata, message)

        client._client.on_message = stamped
        self._read_whole_backlog(client)
        return client

    def _read_whole_backlog(self, client: aiomqtt.Client) -> None:
        """Read everything the socket holds at each wake-up, not one packet: paho reads one
        per call when nothing of ours is in flight, so a backlog (a restart, a burst) sat
        unread in the socket for a loop pass per message, and a command read late is
        stamped late and judged younger than it is. This replaces aiomqtt's reader and
        writer registration (same error handling): reading on to the end of a dying
        connection in one pass, a writer aiomqtt had scheduled for its socket would be
        added once the socket was closed (EBADF, or another connection's descriptor), so
        ours is added only while its socket is still the client's."""
        paho_client = client._client
        loop = asyncio.get_running_loop()
        reader = held = buffered_reads(paho_client)

        def broke(exc: Exception) -> None:  # as aiomqtt: the connection is gone
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)

        def read(sock: Any, fd: int) -> None:
            try:
                for _ in range(READ_PER_PASS):  # bounded: the loop serves others too
                    reader.step()
                    if paho_client._sock is not sock:
                        return  # the connection ended while reading
                    if held():
                        continue  # read from the socket already, not yet by paho
                    pending = getattr(sock, "pending", None)
                    if pending is not None and pending() > 0:
                        continue  # TLS: decrypted bytes select() cannot see
                    if not select.select([fd], [], [], 0)[0]:
                        return
                # the rest on the next pass: bytes held here or by TLS wake no selector
                loop.call_soon(read, sock, fd)
            except Exception as exc:
                broke(exc)

        def write() -> None:
            try:
                paho_client.loop_write()
            except Exception as exc:
                broke(exc)

        self._write_now = (client, write)

        loop_thread = threading.get_ident()  # (made on the loop)

        def when_open(sock: Any, add: Callable[..., Any], *args: Any) -> None:
            # paho calls from aiomqtt's connecting thread too: the loop adds it later.
            # From the loop itself (every write a batch or an ack queues) without waking
            # it through its self-pipe: two system calls a write saved
            fd = sock.fileno()

            def added() -> None:
                if paho_client._sock is sock:
                    add(fd, *args)

            if threading.get_ident() == loop_thread:
                loop.call_soon(added)
            else:
                loop.call_soon_threadsafe(added)

        assert paho_client.on_socket_open is not None, "aiomqtt's misc loop starts there"

        def socket_opened(paho: Any, userdata: Any, sock: Any) -> None:
            # what aiomqtt's own callback does, minus its reader (ours replaces it) and only
            # while the socket is still the client's: its unguarded add_reader, run after an
            # abandoned attempt had closed the socket, failed on the closed descriptor
            def misc() -> None:
                if paho_client._sock is sock:
                    client._misc_task = loop.create_task(client._misc_loop())

            loop.call_soon_threadsafe(misc)
            when_open(sock, loop.add_reader, read, sock, sock.fileno())

        paho_client.on_socket_open = socket_opened

        def add_writer(fd: int, callback: Callable[[], None]) -> None:
            # a write made since paho asked (a batch handed over ``now``) emptied its queue
            # and took the wish back: a writer added now would find nothing to write, and
            # paho, having unregistered already, would never remove it (a loop spinning)
            if paho_client._registered_write:
                loop.add_writer(fd, callback)

        paho_client.on_socket_register_write = lambda _p, _u, sock: when_open(
            sock, add_writer, write
        )

    def _is_own_birth(self, raw: Any) -> bool:
        """This connection's birth, by its id: a boot number can repeat (it is kept
        in memory only on a read-only state directory), and an earlier process's birth
        still queued for us at the broker must not mark the backlog after it as live."""
        try:
            presence = decode(Presence, bytes(raw))
        except (PayloadError, TypeError):
            return False
        return presence.id == self._birth_id

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            for protocol in self._protocol_candidates():
                error = await self._connect_once(protocol, failures)
                if error is None:
                    failures = 0
                if self._closing:
                    return
                if error is None or not _may_be_protocol_refusal(error):
                    break
            if error is not None:
                failures += 1
            # a broker that said no to this login is up: knocking on its port would only
            # start the backoff over, a refused attempt and a log line every second
            refused = _login_refused(error)
            if refused:
                self._read_credentials_again()
            if await self._wait_or_probe(
                backoff_delay(failures, *self._backoff), probe=not refused
            ):
                failures = 0

    def _read_credentials_again(self) -> None:
        if self._credentials is None:
            return
        try:
            self.broker = self._credentials()
        except ConfigError as exc:
            log.warning("%s: %s", self.client_id, exc)

    async def _wait_or_probe(self, delay: float, *, probe: bool = True) -> bool:
        """Sleep ``delay`` before the next attempt, but knock on the broker's port every
        second meanwhile: True (start over from the short delay) as soon as it answers, so
        a hall is back within about a second of its broker, not a 30 s backoff later."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(left, PROBE_EVERY_S * random.uniform(0.5, 1.0)))
            if loop.time() >= end or self._closing:
                return False
            if not probe:
                continue
            try:
                async with asyncio.timeout(PROBE_EVERY_S):
                    _, writer = await asyncio.open_connection(self.broker.host, self.broker.port)
            except (OSError, TimeoutError):
                continue
            writer.close()
            return True
        return False

    async def _connect_once(
        self, protocol: aiomqtt.ProtocolVersion, failures: int
    ) -> BaseException | None:
        """One connection, served until it ends; returns the error if it never came up."""
        assert self._store is not None
        try:
            self._boot = self._store.next_boot()
        except sqlite3.Error as exc:  # must not end the session (the store says why)
            self._boot += 1
            self._state_error = unwritable_reason(self._state_path, exc)
            log.warning(
                "%s: state file not writable (%s); boot %d kept in memory",
                self.client_id,
                self._state_error,
                self._boot,
            )
        self._rev_counter = 0
        client = self._make_client(protocol)
        _settled(client._disconnected)  # aiomqtt drops it unseen if the loss comes mid-connect
        close_socket = socket_closer(client)
        self.attempts += 1
        try:
            async with client:
                self._protocol = protocol
                await self._serve(client)
        except aiomqtt.MqttError as exc:
            if self._client is None:
                self._attempt_failed = True
                loud = failures in (0, 5) or failures % 20 == 0
                level = logging.WARNING if loud else logging.DEBUG
                log.log(
                    level,
                    "%s: cannot connect to %s (MQTT %s, attempt %d): %s%s",
                    self.client_id,
                    self.broker.url,
                    protocol.name,
                    failures + 1,
                    exc,
                    (
                        f" (the broker refused login {self.broker.username!r}: its password "
                        "file is read again before each attempt)"
                        if _login_refused(exc)
                        else ""
                    ),
                )
                return exc
            log.warning("%s: lost the broker: %s", self.client_id, exc)
            self._lost_soon_after_connecting()
        except Exception as exc:
            log.exception("%s: session failed; reconnecting", self.client_id)
            return exc
        finally:
            close_socket()
            _settled(client._disconnected)
            self._on_disconnect()
        return None

    def _lost_soon_after_connecting(self) -> None:
        """Two clients with one id (a cloned SD card, one hall file's id on two Pis) take
        turns on the broker: each connection is dropped, with no reason given, as soon as
        the other connects. Each side sees only that it lost the broker, so say what it
        looks like, and tell the hooks (``on_shared_id``: a device's health, so the desk
        shows it whatever the other client announces). A connection made only after
        attempts failed ended with a broker going down again, not with another client."""
        now = time.monotonic()
        if now - self._up_since > SHORT_LIVED_S:
            return
        if self._broker_was_away:  # a broker going down again and again, not pushing us off
            self._short_lived = []
            return
        window = [t for t in self._short_lived if now - t < SHARED_ID_WINDOW_S]
        self._short_lived = [*window, now]
        if len(self._short_lived) >= SHARED_ID_LOSSES and not self._shared_id:
            self._shared_id_changed(True)
        if (
            len(self._short_lived) < SHARED_ID_LOSSES
            or now - self._shared_id_said < SHARED_ID_REPEAT_S
        ):
            return
        self._shared_id_said = now
        log.warning(
            "%s: the broker dropped %d connections within %g s of making them, in %g s: is "
            "another device or process connected as %s? The broker drops one of two "
            "clients with the same id whenever the other connects (a Pi set up from a copy "
            "of another's card keeps its agent id)",
            self.client_id,
            len(self._short_lived),
            SHORT_LIVED_S,
            SHARED_ID_WINDOW_S,
            self.client_id,
        )

    async def _serve(self, client: aiomqtt.Client) -> None:
        self._client = client
        self.connects += 1
        self._up_since = time.monotonic()
        self._broker_was_away, self._attempt_failed = self._attempt_failed, False
        # Filters covering our own status are subscribed only after the birth, so the one
        # retained status we get back is our birth, or a stale will that came after it.
        filters = list(dict.fromkeys(f for f, _ in self._routes))
        early = [f for f in filters if not matches(f, self.status_topic)]
        late = [self.status_topic, *(f for f in filters if matches(f, self.status_topic))]
        if self.reply_topic is not None:
            early.insert(0, self.reply_topic)
        if early:
            await client.subscribe([self._subscription(f) for f in early])
        await client.publish(
            self.status_topic, self._presence_payload("online"), qos=1, retain=True
        )
        await client.subscribe([self._subscription(f) for f in dict.fromkeys(late)])
        log.info(
            "%s: connected to %s (MQTT %s, boot %d)",
            self.client_id,
            self.broker.url,
            "5" if self._v5 else "3.1.1",
            self._boot,
        )
        self._connected.set()
        self._kick_drain()
        if self._shared_id:
            self._spawn(self._shared_id_cleared(self.connects))
        for hook in self._connect_hooks:
            self._spawn(hook())
        if self.concurrency > 1:
            await self._serve_concurrently(client)
            return
        async for message in client.messages:
            kept = await self._dispatch_guarded(message)
            if kept:
                self._ack(client, message)
            else:
                self.unacked += 1

    async def _dispatch_guarded(self, message: aiomqtt.Message) -> bool:
        try:
            return await self._dispatch(message)
        except Exception:
            # past the handlers' own guard (a bug): acknowledge it and serve on. Raising
            # would restart the session, and the broker would hand the same message
            # back after every reconnect: one client could keep us flapping.
            log.exception("%s: message on %s dropped", self.client_id, message.topic.value)
            return True

    async def _serve_concurrently(self, client: aiomqtt.Client) -> None:
        """Up to ``concurrency`` messages in their handlers at once; acknowledged in
        arrival order as the oldest ones finish."""
        inflight: collections.deque[tuple[aiomqtt.Message, asyncio.Task[bool]]] = (
            collections.deque()
        )

        def settle(_: object = None) -> None:
            while inflight and inflight[0][1].done():
                message, task = inflight.popleft()
                if task.cancelled() or client is not self._client:
                    continue  # interrupted, or its connection is gone: delivered again
                if task.result():
                    self._ack(client, message)
                else:
                    self.unacked += 1

        def start(message: aiomqtt.Message) -> None:
            task = asyncio.ensure_future(self._dispatch_guarded(message))
            inflight.append((message, task))
            task.add_done_callback(settle)

        queued = client._queue  # what paho already handed over: taken at once, in order
        try:
            async for message in client.messages:
                start(message)
                while not queued.empty() and len(inflight) < self.concurrency:
                    start(queued.get_nowait())
                while len(inflight) >= self.concurrency:
                    await asyncio.wait({inflight[0][1]})
        finally:
            for _, task in inflight:
                task.remove_done_callback(settle)

    def _ack(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Send the PUBACK (PUBCOMP at QoS 2) paho held back for ``message``. Always on the
        connection that delivered it: once that one is gone this sends nothing, and the
        broker redelivers the message on the next connection."""
        if not self.ack_after_handler or message.qos == 0:
            return
        rc = client._client.ack(message.mid, message.qos)
        if rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("%s: ack of message %d not sent: %s", self.client_id, message.mid, rc)

    def reconnect(self) -> None:
        """End the connection cleanly (no will) and connect again at once: the broker then
        delivers again every message left unacknowledged on this one."""
        client = self._client
        if client is not None:
            client._client.disconnect()

    def _on_disconnect(self) -> None:
        self.unacked = 0
        if self._client is not None:
            self._down_since = time.monotonic()
        self._connected.clear()
        self._client = None
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()

    @property
    def backlog(self) -> int:
        """Messages received from the broker and not yet handed to a handler."""
        client = self._client
        return 0 if client is None else len(client.messages)

    @property
    def _v5(self) -> bool:
        return self._protocol is aiomqtt.ProtocolVersion.V5

    # --- publishing ------------------------------------------------------------------------

    def spec(self, topic: str) -> TopicSpec:
        found = self._specs.get(topic)
        if found is None:
            found = self._specs[topic] = spec_for(parse(topic))
        return found

    async def publish(
        self, topic: str, message: BaseModel, *, queue: bool = False, deadline: float | None = None
    ) -> bool:
        """Publish ``message`` with the QoS/retain/expiry the contract gives ``topic``.

        Returns True once the broker has it, False when it was put in the outbox. ``queue``
        lets the message wait in the outbox while the broker is away; it is refused for
        topics whose messages must never arrive late (a button press, a reply).
        ``deadline``: the loop time its sender stops waiting (a request). The message lives
        what is left of it at the broker, and is not sent at all once it has passed (a
        sender that stood still must not hand on a command it has given up on).
        """
        spec = self.spec(topic)
        if not isinstance(message, _payload_classes(spec.payload)):
            raise TypeError(f"{topic} carries {spec.payload_name}, not {type(message).__name__}")
        if queue and not spec.queue_offline:
            raise ValueError(f"{topic}: {spec.payload_name} may not be queued offline")
        data = encode(message)
        client = self._live_client()
        if queue:
            assert self._store is not None, "publish before the session was entered"
            if client is None or len(self._store) or self._drain_running():
                self._store.push(topic, data, spec.qos, spec.retained)
                self._kick_drain()
                return False
        if client is None:
            raise NotConnected(
                f"not connected to {self.broker.url}: {topic} was not sent "
                "(this message is never queued offline)"
            )
        try:
            life = spec.expiry_s
            if deadline is not None:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise RequestTimeout(f"{topic} not sent: its sender's deadline passed")
                life = max(1, math.ceil(left))
            await self._send(client, topic, data, spec.qos, spec.retained, life)
        except aiomqtt.MqttError as exc:
            if queue and self._store is not None:
                self._store.push(topic, data, spec.qos, spec.retained)
                return False
            raise NotConnected(f"{topic} was not sent: {exc}") from exc
        return True

    async def publish_many(self, items: Sequence[tuple[str, BaseModel]]) -> None:
        """Publish several messages, each with its contract's QoS/retain/expiry, handed to
        paho in this order at once and their PUBACKs awaited together: one pass per batch
        instead of a task, an event and a timeout per message (the coordinator sends
        several for every command). Never queued offline: raises NotConnected when the
        broker is away or the connection drops before every PUBACK is in."""
        await self.hand_over(items).acked()

    def hand_over(self, items: Sequence[tuple[str, BaseModel]], *, now: bool = False) -> Handed:
        """The synchronous half of :meth:`publish_many`: every message is in paho's queue,
        in this order, when it returns (before anything queued after it, a PUBACK of a
        command included); await ``acked()`` for the broker's PUBACKs. Raises
        NotConnected when the broker is away. ``now``: written to the socket before this
        returns, not when the loop next finds it writable (two loop passes later, ~0.1 ms
        at best: what a quiet hall's CALL waits for; under load the wait joins more
        packets into one write instead)."""
        client = self._live_client()
        if client is None:
            raise NotConnected(
                f"not connected to {self.broker.url}: {len(items)} message(s) not sent "
                "(never queued offline)"
            )
        paho_client = client._client
        pending: dict[int, Any] = client._pending_publishes
        handed = Handed(asyncio.get_running_loop().create_future(), client, self._op_timeout)
        run: list[tuple[str, bytes, bool, Properties | None]] = []  # QoS 1, in order

        def held(mid: int) -> None:
            # aiomqtt's on_publish calls set() on what it finds for the PUBACK's mid
            pending[mid] = handed
            handed.mids.append(mid)

        def send(topic: str, data: bytes, qos: int, retain: bool, props: Any) -> None:
            info = paho_client.publish(topic, data, qos, retain, props)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise NotConnected(f"{topic} was not sent: {info.rc}")
            if qos and not info.is_published():
                held(info.mid)

        def flush() -> None:
            if not run:
                return
            from hallq.paho_batch import publish_batch  # the coordinator's: not an agent's

            mids = publish_batch(paho_client, [(t.encode(), d, r, p) for t, d, r, p in run])
            if mids is None:  # paho's own path decides (and says why not)
                for topic, data, retain, props in run:
                    send(topic, data, 1, retain, props)
            else:
                for mid in mids:
                    held(mid)
            run.clear()

        for topic, message in items:
            spec = self.spec(topic)
            if not isinstance(message, _payload_classes(spec.payload)):
                raise TypeError(
                    f"{topic} carries {spec.payload_name}, not {type(message).__name__}"
                )
            properties = None
            if spec.expiry_s and self._v5:
                properties = self._expiry.get(spec.expiry_s)
                if properties is None:  # read, never changed, by paho: one per expiry
                    properties = FixedProperties(PacketTypes.PUBLISH)
                    properties.MessageExpiryInterval = spec.expiry_s
                    self._expiry[spec.expiry_s] = properties
            if spec.qos == 1:  # its topic checked by the contract (``spec``): no wildcard
                run.append((topic, encode(message), spec.retained, properties))
                continue
            flush()
            send(topic, encode(message), spec.qos, spec.retained, properties)
        flush()
        handed.left = len(handed.mids)
        if not handed.left:
            handed.done.set_result(None)
        if now and self._write_now is not None and self._write_now[0] is client:
            self._write_now[1]()
        return handed

    async def _send(
        self,
        client: aiomqtt.Client,
        topic: str,
        data: bytes,
        qos: int,
        retain: bool,
        expiry_s: int | None,
    ) -> None:
        properties = None
        if expiry_s and self._v5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = expiry_s
        if qos == 0:
            await client.publish(topic, data, qos=qos, retain=retain, properties=properties)
            return
        # A dropped connection fails the publish at once: aiomqtt would wait for a PUBACK
        # that cannot come until its operation timeout.
        gone = client._disconnected
        publish = asyncio.ensure_future(
            client.publish(topic, data, qos=qos, retain=retain, properties=properties)
        )
        try:
            await asyncio.wait((publish, gone), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            publish.cancel()
            raise
        if publish.done():
            publish.result()
            return
        publish.cancel()
        raise aiomqtt.MqttError(f"connection lost before the broker acknowledged {topic}")

    def _drain_running(self) -> bool:
        return self._drainer is not None and not self._drainer.done()

    def _live_client(self) -> aiomqtt.Client | None:
        """The connection, unless it is gone (even before the session has noticed)."""
        client = self._client
        if client is None or client._disconnected.done():
            return None
        return client

    def _kick_drain(self) -> None:
        client = self._live_client()
        if client is None or self._drain_running() or not self.outbox_size:
            return
        self._drainer = asyncio.create_task(self._drain(client))

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Send the outbox in order; a row leaves the file only after the broker acked it."""
        store = self._store
        assert store is not None
        sent = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            while items := store.head():
                for item in items:
                    if self.drain_per_s:
                        await asyncio.sleep(start + sent / self.drain_per_s - loop.time())
                    await self._send(client, item.topic, item.payload, item.qos, item.retain, None)
                    store.remove(item.seq)
                    sent += 1
        except aiomqtt.MqttError as exc:
            log.warning("%s: outbox drain stopped after %d: %s", self.client_id, sent, exc)
            return
        if sent:
            log.info("%s: sent %d queued message(s) from the outbox", self.client_id, sent)

    async def wait_outbox_empty(self, timeout: float) -> None:  # noqa: ASYNC109  public API: the caller bounds each wait
        """Wait until every queued publish reached the broker (tests, clean shutdown)."""
        async with asyncio.timeout(timeout):
            while self.outbox_size or self._drain_running():
                drainer = self._drainer
                if drainer is not None and not drainer.done():
                    try:
                        await asyncio.shield(drainer)
                    except asyncio.CancelledError:
                        if not drainer.cancelled():
                            raise  # we were cancelled, not the drain (its link went)
                else:
                    await asyncio.sleep(0.05)

    # --- requests ------------------------------------------------------------------------

    async def request(self, topic: str, message: Message, *, timeout: float) -> Any:  # noqa: ASYNC109  public API: the caller bounds each wait
        """Publish a request and wait for the reply on this client's reply topic whose
        ``corr`` is the request's id. Never queued: a caller that times out decides itself.
        ``timeout`` covers the publish too: a dispenser must decide within it even when the
        broker has just vanished and the PUBACK will never come."""
        if self.reply_topic is None:
            raise ValueError(f"role {self.role} has no reply topic")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[message.id] = future
        try:
            async with asyncio.timeout_at(deadline):
                await self.publish(topic, message, deadline=deadline)
                return await future
        except TimeoutError:
            raise RequestTimeout(
                f"no reply to {topic} (id {message.id}) within {timeout:g} s"
            ) from None
        finally:
            self._pending.pop(message.id, None)

    # --- receiving -----------------------------------------------------------------------

    @property
    def filters(self) -> tuple[str, ...]:
        """The topic filters subscribed to (what this client can receive)."""
        return tuple(dict.fromkeys(f for f, _ in self._routes))

    def on_connect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` after every (re)connect, once the birth is out (republish state)."""
        self._connect_hooks.append(hook)

    def on_shared_id(self, hook: Callable[[bool], Awaitable[None] | None]) -> None:
        """Call ``hook(True)`` when the broker keeps dropping this client's connections as
        soon as they are made (another client connected with its id: a copied card, a
        stolen password), ``hook(False)`` once a connection has lasted SHARED_ID_CLEAR_S
        since. The device says so in its health: the other client may well announce
        nothing, and only the device itself can tell it is being pushed off."""
        self._shared_id_hooks.append(hook)

    @property
    def shared_id_suspected(self) -> bool:
        return self._shared_id

    @property
    def state_error(self) -> str | None:
        """Why the state file (boots, outbox) cannot be written, if it cannot: a device
        says it in its health (a Pi's SD card gone read-only is its commonest death)."""
        store = self._store
        return self._state_error or (store.unwritable if store is not None else None)

    def _shared_id_changed(self, suspected: bool) -> None:
        self._shared_id = suspected
        for hook in self._shared_id_hooks:
            try:  # (called where the session reconnects: a hook's bug must not end it)
                result = hook(suspected)
            except Exception:
                log.exception("%s: shared id hook %s failed", self.client_id, hook)
                continue
            if result is not None:
                self._spawn(result)

    async def _shared_id_cleared(self, connection: int) -> None:
        await asyncio.sleep(SHARED_ID_CLEAR_S)
        if self._shared_id and self.connects == connection and self.connected:
            log.info(
                "%s: connected for %g s without being dropped: no other client uses this id now",
                self.client_id,
                SHARED_ID_CLEAR_S,
            )
            self._short_lived = []
            self._shared_id_changed(False)

    async def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Route messages matching ``topic_filter`` to ``handler`` (now and after every
        reconnect). Payloads are validated against the contract before the handler runs."""
        self._routes.append((check_filter(topic_filter), handler))
        self._handlers.clear()
        client = self._client
        if client is not None:
            await client.subscribe([self._subscription(topic_filter)])

    def _subscription(self, topic_filter: str) -> tuple[str, Any]:
        """QoS 1; on MQTT 5 also "retain as published", so a message its sender published
        retained says so when it arrives live too (the coordinator refuses retained
        commands). On 3.1.1 only a copy from the broker's retained store is flagged."""
        if self._v5:
            return topic_filter, SubscribeOptions(qos=1, retainAsPublished=True)
        return topic_filter, 1

    async def _dispatch(self, message: aiomqtt.Message) -> bool:
        """Validate and route one message; False if a handler could not keep it (then it is
        not acknowledged)."""
        topic = message.topic.value
        raw = (
            message.payload
            if isinstance(message.payload, (bytes, bytearray))
            else (str(message.payload).encode() if message.payload is not None else b"")
        )
        if topic == self.status_topic:
            self._watch_own_status(bytes(raw))
        if topic == self.reply_topic:
            self._resolve_reply(topic, bytes(raw))
            return True
        handlers = self._handlers.get(topic)
        if handlers is None:  # paho's matcher builds a tree per call: once per topic
            handlers = [h for f, h in self._routes if matches(f, topic)]
            if len(self._handlers) >= ROUTE_CACHE:  # topics come from clients: bounded
                self._handlers.clear()
            self._handlers[topic] = handlers
        if not handlers:
            log.debug("%s: no route for %s (ignored)", self.client_id, topic)
            return True
        if self.admit is not None and not self.admit(topic):
            return True
        if not raw and message.retain:
            return True
        parsed = self._parsed.get(topic)
        if parsed is None:
            try:
                parts = parse(topic)
                parsed = parts, spec_for(parts)
            except TopicError as exc:
                await self._report(topic, "bad_topic", str(exc), None)
                return True
            if len(self._parsed) >= ROUTE_CACHE:
                self._parsed.clear()
            self._parsed[topic] = parsed
        parts, spec = parsed
        try:
            payload = decode(spec.payload, bytes(raw))
        except PayloadError as exc:
            await self._report(topic, exc.code, str(exc), exc.field)
            return True
        if not self._fresh(topic, parts, payload):
            log.debug("%s: stale %s on %s ignored", self.client_id, spec.payload_name, topic)
            return True
        arrival = self._arrivals.pop(message.mid, None) if message.mid else None
        now = time.monotonic()
        if arrival is None:  # QoS 0, or paho's hook did not see it: as it is now
            arrival = _Arrival(now, None, _expiry_left(message))
        incoming = Incoming(
            topic,
            parts,
            payload,
            bool(message.retain),
            arrival.waited_s,
            arrival.expiry_left_s,
            now - arrival.at,
            arrival.at,
        )
        kept = True
        for handler in handlers:
            try:
                result = handler(incoming)
                if inspect.isawaitable(result):
                    await result
            except NotKept as exc:
                log.warning(
                    "%s: %s not kept, left for the broker to deliver again: %s",
                    self.client_id,
                    topic,
                    exc,
                )
                kept = False
            except Exception as exc:  # one bad message must never end the session
                log.exception("%s: handler %s failed on %s", self.client_id, handler, topic)
                await self._report(topic, "handler_failed", f"{type(exc).__name__}: {exc}", None)
        return kept

    def _fresh(self, topic: str, parts: TopicParts, payload: Any) -> bool:
        if isinstance(payload, Retained):
            return self._revisions.accept(topic, payload.rev, payload.ts)
        if isinstance(payload, Presence):
            if (payload.role, payload.client) != (parts.role, parts.client):
                # one login's presence naming another: its boot must not make that one's
                # real will look stale (it would stay online when gone); the handler says so
                return True
            return self._presence.accept(payload)
        return True

    def _watch_own_status(self, raw: bytes) -> None:
        """Re-assert ``online`` when a will from an earlier connection overwrote it."""
        try:
            presence = decode(Presence, raw)
        except PayloadError:
            presence = None
        client = self._client
        if self._closing or client is None:
            return
        if presence is not None and presence.state == "online" and presence.boot >= self._boot:
            return  # our birth is back (paho's hook marked what follows as live)
        log.info(
            "%s: own status was replaced by %s; publishing online (boot %d) again",
            self.client_id,
            f"a will from boot {presence.boot}" if presence else "an unreadable payload",
            self._boot,
        )
        # the same birth again, not a new one: to whoever watches presence a birth with a
        # new id and no higher boot is another client using this id (DeviceBook)
        birth = self._birth or self._presence_payload("online")  # (set before any dispatch)
        self._spawn(client.publish(self.status_topic, birth, qos=1, retain=True))

    def _resolve_reply(self, topic: str, raw: bytes) -> None:
        try:
            reply = decode(Reply, raw)
        except PayloadError as exc:
            self._spawn(self._report(topic, exc.code, str(exc), exc.field))
            return
        future = self._pending.get(reply.corr)
        if future is None or future.done():
            log.info("%s: reply %s to an unknown or expired request", self.client_id, reply.corr)
            return
        future.set_result(reply)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: background publish failed: %s", self.client_id, task.exception())

    async def _report(self, topic: str, code: RejectCode, text: str, field: str | None) -> None:
        """Log and publish what was rejected. Everything quoted came from a client, so it is
        redacted, escaped and cut to the report's limits here, whoever built it: a report
        that failed its own validation would end the session (issue 12)."""
        log.warning("%s: rejected message on %s: %s", self.client_id, topic, text)
        try:
            report = ErrorReport(
                topic=_clip(topic, 300),
                code=code,
                message=_clip(text, 1000),
                field=None if field is None else _clip(field, 200),
            )
            await self.publish(self.error_topic, report)
        except (NotConnected, aiomqtt.MqttError) as exc:
            log.warning("%s: could not report the error: %s", self.client_id, exc)
        except Exception:  # never let a report take the session down
            log.exception("%s: could not build the error report", self.client_id)


def _clip(text: str, limit: int) -> str:
    text = escape_controls(redact(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."
