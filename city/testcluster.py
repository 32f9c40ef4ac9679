"""A private three-node NATS city broker on loopback, for tests, benches and trying the
bridge on one machine (as ``hallqctl.mosquitto`` is for the hall's broker).

Each node has its own ports and JetStream store; MQTT (which NATS serves only with
JetStream) listens with TLS from a throwaway CA, and retained messages and sessions are
replicated on all three nodes so one node's loss loses nothing. Users: one per hall
(``city.bridge.nats_user``'s rule, publishing only its hall's summaries) and ``bureau``
(reading every hall's summaries).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

NATS_SERVER = "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_nats_server() -> str | None:
    return shutil.which("nats-server") or (NATS_SERVER if Path(NATS_SERVER).exists() else None)


def make_certs(d: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 (any TLS test: the city cluster, the
    hall broker); returns the CA file."""

    def ssl_(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl_(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=hallq city test CA",
    )
    ssl_(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl_(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return d / "ca.crt"


class NatsCityCluster:
    def __init__(
        self,
        workdir: Path,
        halls: dict[str, str],
        bureau_password: str,
        nodes: int = 3,
        nearby: dict[str, list[str]] | None = None,
    ) -> None:
        binary = find_nats_server()
        if binary is None:
            raise FileNotFoundError(
                "nats-server is not installed (Debian: apt install nats-server)"
            )
        self.binary = binary
        self.workdir = workdir
        self.halls = halls  # hall id -> bridge password
        self.nearby = nearby or {}  # hall id -> the halls whose queues its bridge reads
        self.bureau_password = bureau_password
        self.nodes = nodes
        self._pick_ports()
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self.cafile = make_certs(workdir)

    def _pick_ports(self) -> None:
        self.client_ports = [free_port() for _ in range(self.nodes)]
        self.route_ports = [free_port() for _ in range(self.nodes)]
        self.mqtt_ports = [free_port() for _ in range(self.nodes)]
        self.monitor_ports = [free_port() for _ in range(self.nodes)]

    def start_all(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start every node and wait until each takes an MQTT session. A port picked free
        can be taken by another process before the node binds it; then all nodes start
        again on new ports."""
        for attempt in range(attempts):
            self.start()
            try:
                for i in range(self.nodes):
                    self.wait_healthy(i, timeout)
                for i in range(self.nodes):
                    self.wait_mqtt(i, timeout)
                return
            except RuntimeError as exc:
                self.stop()
                if "address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
                for i in range(self.nodes):
                    shutil.rmtree(self.workdir / f"store-{i}", ignore_errors=True)
                    (self.workdir / f"city-{i}.log").unlink(missing_ok=True)
                self._pick_ports()

    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.mqtt_ports]

    def _users(self) -> list[dict[str, object]]:
        from city.bridge import nats_user_entry

        users: list[dict[str, object]] = [
            nats_user_entry(hall, f"hall-{hall}", pw, self.nearby.get(hall, ()))
            for hall, pw in self.halls.items()
        ]
        users.append(
            {
                "user": "bureau",
                "password": self.bureau_password,
                "permissions": {
                    "publish": {"allow": ["$MQTT.>"]},
                    "subscribe": {
                        "allow": ["hallq.v1.*.state", "hallq.v1.*.state.>", "$MQTT.>", "_INBOX.>"]
                    },
                },
            }
        )
        return users

    def _config(self, i: int) -> Path:
        routes = [f"nats-route://127.0.0.1:{p}" for p in self.route_ports]
        store = self.workdir / f"store-{i}"
        conf: dict[str, object] = {
            "server_name": f"city-{i}",
            "listen": f"127.0.0.1:{self.client_ports[i]}",
            "http": f"127.0.0.1:{self.monitor_ports[i]}",
            "jetstream": {"store_dir": str(store)},
            "mqtt": {
                "listen": f"127.0.0.1:{self.mqtt_ports[i]}",
                "tls": {
                    "cert_file": str(self.workdir / "server.crt"),
                    "key_file": str(self.workdir / "server.key"),
                },
                "stream_replicas": min(3, self.nodes),
            },
            "authorization": {"users": self._users()},
        }
        if self.nodes > 1:  # one node (a bench that needs no failover) starts faster alone
            conf["cluster"] = {
                "name": "hallq-city",
                "listen": f"127.0.0.1:{self.route_ports[i]}",
                "routes": routes,
            }
        path = self.workdir / f"city-{i}.conf"
        path.write_text(json.dumps(conf, indent=2))  # NATS config accepts JSON
        return path

    def start(self, i: int | None = None) -> None:
        for n in [i] if i is not None else range(len(self.procs)):
            assert self.procs[n] is None, f"node {n} already running"
            conf = self._config(n)
            with open(self.workdir / f"city-{n}.log", "ab") as log:
                self.procs[n] = subprocess.Popen(
                    [self.binary, "-c", str(conf)], stdout=log, stderr=log
                )

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.kill()
            proc.wait(10)
            self.procs[i] = None

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)

    def log(self, i: int) -> str:
        path = self.workdir / f"city-{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_healthy(self, i: int, timeout: float = 30.0) -> None:
        """Until node ``i``'s monitor says it is healthy, JetStream included: an MQTT session
        asked for before the cluster has its JetStream leader waits out NATS's own 4 s
        timeout and fails (``lookup sessions stream``), so probing early costs seconds."""
        url = f"http://127.0.0.1:{self.monitor_ports[i]}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[i]
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"city node {i} is not running: {self.log(i)[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"city node {i} not healthy in {timeout} s: {self.log(i)[-2000:]}")

    def wait_mqtt(self, i: int, timeout: float = 30.0) -> None:
        """Until node ``i`` accepts an MQTT session (JetStream must have its leader)."""
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            proc = self.procs[i]
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"city node {i} is not running: {self.log(i)[-2000:]}")
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"probe-{i}-{time.monotonic_ns()}",
                protocol=paho.MQTTv311,
            )
            client.tls_set(ca_certs=str(self.cafile))
            client.username_pw_set("bureau", self.bureau_password)
            try:
                client.connect("127.0.0.1", self.mqtt_ports[i], keepalive=5)
                rc = None
                client.loop_start()
                end = time.monotonic() + 5
                while time.monotonic() < end and not client.is_connected():
                    time.sleep(0.05)
                rc = client.is_connected()
                client.disconnect()
                client.loop_stop()
                if rc:
                    return
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(
            f"city node {i} took no MQTT session in {timeout} s ({last}): {self.log(i)[-2000:]}"
        )


class LinkCut:
    """A TCP relay on loopback standing for the city link, which a test or bench cuts and
    restores: ``cut`` drops every connection through it and refuses new ones (as a dead
    WAN link or a firewall would look to the hall), ``restore`` lets them through again.
    It runs on the caller's asyncio loop; clients in threads (the shipper) use it too."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.up = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[Any]] = set()

    async def start(self) -> LinkCut:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relay = asyncio.current_task()
        if relay is not None:  # awaited by close(): one cancelled at the loop's end is logged
            self._relays.add(relay)
            relay.add_done_callback(self._relays.discard)
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        if not self.up:  # cut while connecting upstream: it must not outlive the cut
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()
                self._open.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.up = False
        for writer in list(self._open):
            transport = writer.transport
            transport.abort()  # no FIN handshake: the peer learns on its next read or write
        self._open.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._relays:  # each ends once its connections are aborted
            await asyncio.wait(self._relays, timeout=5)


class BridgeThread:
    """A ``city.bridge.CityBridge`` on an event loop of its own in a thread, for tests whose
    clients are synchronous (in a hall it is its own process, ``hallq bridge``)."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="city-bridge", daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.bridge.run(self._stop)

        asyncio.run(serve())

    def start(self) -> BridgeThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Stops the bridge (its link notice says 0) and waits for its thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
