"""The city link in the fault suite (``bench/faults.py --scenario city-link-cut``).

The hall's two links to the city, each through a relay on loopback that the suite cuts
and restores (``city.testcluster.LinkCut``: every connection dropped, new ones refused,
as when the hall's WAN line goes): the city bridge (``hallq bridge``, its own process, as
in a hall) to a one-node NATS city broker and the shipper (``hallq ship``, its own
process, as in a hall) to a database of this run's own on the machine's PostgreSQL
(``HALLQ_FAULTS_PG`` or the tests' ``HALLQ_TEST_PG``, an admin connection string; default
the local server as postgres).

The hall must not notice (its columns are the other scenarios'); the city must catch up
once the link is back: every entry of the hall's log shipped exactly once, and the
window and queue summaries the city holds for the hall equal the hall's own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

from city.testcluster import LinkCut, NatsCityCluster, find_nats_server
from hallq.topics import HallTopics

ADMIN_DSN = (
    os.environ.get("HALLQ_FAULTS_PG")
    or os.environ.get("HALLQ_TEST_PG")  # the city tests' server, where one is set
    or "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
HALL_PASSWORD = "hall-pw"
BUREAU_PASSWORD = "bureau-pw"


class CityUnavailable(RuntimeError):
    """A part of the city is missing on this machine; the message says which."""


def max_seq(log: Path) -> int:
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0])


class CityLink:
    """The city broker, the city database and the relays standing for the link."""

    def __init__(self, work: Path, hall_id: str) -> None:
        self.work = work / "city"
        self.work.mkdir(parents=True)
        self.hall_id = hall_id
        self.hall_port = 0  # the hall broker's, once it runs
        self.cluster: NatsCityCluster | None = None
        self.links: list[LinkCut] = []
        self.dsn = ""
        self.shipper: subprocess.Popen[bytes] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self.catchups: list[float] = []  # per cut: restore -> the city has what the hall had

    def _psycopg(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise CityUnavailable("psycopg is not installed (pip install -e '.[city]')") from exc
        return psycopg

    async def start(self) -> None:
        """Database, city broker and relays up."""
        if find_nats_server() is None or shutil.which("openssl") is None:
            raise CityUnavailable("nats-server and openssl are needed for the city broker")
        psycopg = self._psycopg()
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from city.migrate import migrate

        name = f"hallq_faults_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            raise CityUnavailable(f"no PostgreSQL at {ADMIN_DSN}: {exc}") from exc
        admin_parts = conninfo_to_dict(ADMIN_DSN)
        self.dsn = make_conninfo(ADMIN_DSN, dbname=name)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            migrate(conn)
        # one node: the bridge's failover across city nodes is tests/test_city_bridge.py's;
        # here the hall's whole link goes, and three nodes take 8 s more to start
        self.cluster = NatsCityCluster(
            self.work, {self.hall_id: HALL_PASSWORD}, BUREAU_PASSWORD, nodes=1
        )
        await asyncio.to_thread(self.cluster.start_all)  # (its ports are final only then)
        pg_host = str(admin_parts.get("host", "127.0.0.1"))
        pg_port = int(str(admin_parts.get("port", 5432)))
        for host, port in [(pg_host, pg_port)] + [
            ("127.0.0.1", p) for p in self.cluster.mqtt_ports
        ]:
            self.links.append(await LinkCut(host, port).start())

    def start_bridge(self, config: Path) -> None:
        """``hallq bridge`` between the hall broker and the city node's relay."""
        assert self.cluster is not None
        city = ",".join(f"127.0.0.1:{link.port}" for link in self.links[1:])
        command = [sys.executable, "-m", "hallqctl.cli", "bridge", "--config", str(config)]
        with (self.work / "bridge.log").open("ab") as err:
            self.bridge = subprocess.Popen(
                [*command, "--city", city, "--cafile", str(self.cluster.cafile)],
                env={**os.environ, "HALLQ_CITY_BRIDGE_PASSWORD": HALL_PASSWORD},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def start_shipper(self, config: Path) -> None:
        from psycopg.conninfo import make_conninfo

        dsn = make_conninfo(self.dsn, host="127.0.0.1", port=self.links[0].port)
        with (self.work / "shipper.log").open("ab") as err:
            self.shipper = subprocess.Popen(
                [sys.executable, "-m", "hallqctl.cli", "ship", "--config", str(config)],
                env={**os.environ, "HALLQ_CITY_DSN": dsn},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def cut(self) -> None:
        for link in self.links:
            link.cut()

    async def restore(self, log: Path) -> None:
        """The link is back; times how long the city takes to have all the hall had at
        this moment (shipped and bridged; the load goes on meanwhile). The next cut comes
        only after: a cut during the catch-up would be timed as part of it."""
        for link in self.links:
            link.restore()
        since = time.perf_counter()
        target = max_seq(log)
        try:
            async with asyncio.timeout(120):
                await self.shipped_to(target)
                await self._bridge_up()
        except TimeoutError:
            why = self.state(target)
            raise RuntimeError(f"the city did not catch up in 120 s: {why}") from None
        self.catchups.append(time.perf_counter() - since)

    def state(self, target: int) -> str:
        """Where the catch-up stands, for a run that failed: the cursor against the hall's
        log, whether the shipper and the bridge still run, and their last log lines."""
        cursor = self.shipped()[2]
        lines = [f"shipped to {cursor} of {target}"]
        for name, proc in (("shipper", self.shipper), ("bridge", self.bridge)):
            code = None if proc is None else proc.poll()
            tail = (self.work / f"{name}.log").read_text(errors="replace").splitlines()[-3:]
            lines.append(f"{name} {'running' if code is None else f'exited {code}'}: {tail}")
        return "; ".join(lines)

    async def _bridge_up(self) -> None:
        """The bridge's connection is up again (its ``city/link`` notice, read on the hall
        broker, where it is kept retained)."""
        topic = HallTopics(self.hall_id).city_link()
        async with aiomqtt.Client(
            "127.0.0.1", self.hall_port, identifier=f"fault-link-{uuid.uuid4().hex[:8]}"
        ) as client:
            await client.subscribe(topic, 1)
            async for message in client.messages:
                if bytes(message.payload) == b"1":
                    return

    async def shipped_to(self, seq: int) -> None:
        """Until the city's cursor for the hall reaches ``seq`` (polled: another process
        moves it)."""
        while True:
            if (await asyncio.to_thread(self.shipped))[2] >= seq:
                return
            await asyncio.sleep(0.1)

    def shipped(self) -> tuple[int, set[int], int]:
        """(rows, distinct entries, cursor) of the hall in the city database (read there,
        not through the link)."""
        psycopg = self._psycopg()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT seq FROM events WHERE hall_id = %s", (self.hall_id,)
            ).fetchall()
            cursor = conn.execute(
                "SELECT shipped_seq FROM halls WHERE hall_id = %s", (self.hall_id,)
            ).fetchone()
        return len(rows), {int(r[0]) for r in rows}, int(cursor[0]) if cursor else 0

    async def views(self, quiet: float = 1.5) -> dict[str, bytes]:
        """The window and queue summaries the city holds for the hall (retained), read as
        the bureau reads them, on a city node directly."""
        assert self.cluster is not None
        context = ssl.create_default_context(cafile=str(self.cluster.cafile))
        base = HallTopics(self.hall_id).base
        seen: dict[str, bytes] = {}
        async with aiomqtt.Client(
            "127.0.0.1",
            self.cluster.mqtt_ports[0],
            username="bureau",
            password=BUREAU_PASSWORD,
            tls_context=context,
            protocol=aiomqtt.ProtocolVersion.V311,
            identifier=f"fault-bureau-{uuid.uuid4().hex[:8]}",
        ) as client:
            await client.subscribe([(f"{base}/state/window/+", 1), (f"{base}/state/queue/+", 1)])
            try:
                async with asyncio.timeout(quiet):
                    async for message in client.messages:
                        seen[message.topic.value] = bytes(message.payload)
            except TimeoutError:
                pass
        return seen

    async def verdict(self, log: Path, expected: dict[str, Any], same: Any) -> dict[str, Any]:
        """After the run: the city has every entry of the hall's log once, and its view."""
        from hallq import messages as m

        with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as db:
            local = {int(r[0]) for r in db.execute("SELECT seq FROM entries")}
        started = time.perf_counter()
        async with asyncio.timeout(120):
            await self.shipped_to(max(local, default=0))
        final_s = time.perf_counter() - started
        rows, distinct, _ = await asyncio.to_thread(self.shipped)
        shown = await self.views()
        wanted = {
            t: v for t, v in expected.items() if "/state/window/" in t or "/state/queue/" in t
        }
        apart = []
        for topic, view in wanted.items():
            raw = shown.get(topic)
            model = m.WindowState if "/window/" in topic else m.QueueState
            if raw is None or not same(m.decode(model, raw), view):
                apart.append(topic)
        return {
            "city_lost": len(local - distinct),
            "city_duplicated": rows - len(distinct),
            "city_not_converged": len(apart),
            "city_not_converged_topics": sorted(apart)[:5],
            "city_shipped": rows,
            "city_catchup_max_s": round(max(self.catchups, default=0.0), 3),
            "city_catchup_median_s": round(statistics.median(self.catchups or [0.0]), 3),
            "city_cuts_caught_up": len(self.catchups),
            "city_final_s": round(final_s, 3),
        }

    async def close(self) -> None:
        for proc in (self.shipper, self.bridge):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        for link in self.links:
            await link.close()
        if self.cluster is not None:
            self.cluster.stop()
        if self.dsn:
            psycopg = self._psycopg()
            from psycopg.conninfo import conninfo_to_dict

            name = conninfo_to_dict(self.dsn)["dbname"]
            with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
