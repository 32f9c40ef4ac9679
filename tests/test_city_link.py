"""The city link cut: a hall keeps serving with PostgreSQL and the city broker out of
reach, and both its shipping and its bridge catch up once the link is back.

Real parts: the machine's PostgreSQL (a database of this test's own), a three-node NATS
city broker, the hall's Mosquitto, the city bridge (``hallq bridge``), the
coordinator, a dispenser session and the shipper. The link is a relay on loopback
(``city.testcluster.LinkCut``) that the test cuts: every connection to the city drops and
new ones are refused, as when the hall's WAN line goes.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from city.bridge import CityBridge, city_broker
from city.testcluster import LinkCut, NatsCityCluster, find_nats_server
from coordinator.shipmark import mark_path, read_mark
from hallq import messages as m
from hallq.config import BrokerConfig, CityConfig, NearbyHall
from hallq.topics import HallTopics
from hallqctl.mosquitto import Mosquitto, find_mosquitto

from .ci import missing
from .citydb import city_dsn, dsn_with, psycopg_module
from .coordinated import FakeClock, device, running
from .test_web_helpers import web_hall

__all__ = ["city_dsn"]
pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


async def until(cond: Callable[[], bool], limit_s: float, what: str) -> None:
    """Poll ``cond`` (a database, a file, another thread: nothing to await) until true."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def shipped(dsn: str) -> tuple[int, int, int | None]:
    """(rows, distinct seqs, cursor) of the test hall in the city database."""
    psycopg = psycopg_module()
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT seq) FROM events WHERE hall_id = 'test-hall'"
        ).fetchone()
        cursor = conn.execute(
            "SELECT shipped_seq FROM halls WHERE hall_id = 'test-hall'"
        ).fetchone()
    return rows, distinct, cursor[0] if cursor else None


async def test_a_hall_serves_through_a_city_link_cut_and_catches_up_after(
    city_dsn: str, tmp_path: Path
) -> None:
    from city.ship import Shipper

    if find_nats_server() is None or shutil.which("openssl") is None or find_mosquitto() is None:
        missing("nats-server, openssl and mosquitto (.ci/run installs them)")
    psycopg = psycopg_module()
    pg = psycopg.conninfo.conninfo_to_dict(city_dsn)
    (tmp_path / "city").mkdir()
    city = NatsCityCluster(
        tmp_path / "city",
        {"test-hall": "hall-pw", "haizhu": "hz-pw"},
        "bureau-pw",
        nearby={"test-hall": ["haizhu"]},
    )
    city.start_all()
    links: list[LinkCut] = []
    hall: Mosquitto | None = None
    clients: list[paho.Client] = []
    stop = threading.Event()
    bridge_stop = asyncio.Event()
    bridging: asyncio.Future[None] | None = None
    try:
        db_link = await LinkCut(str(pg.get("host", "127.0.0.1")), int(pg.get("port", 5432))).start()
        links.append(db_link)
        for port in city.mqtt_ports:
            links.append(await LinkCut("127.0.0.1", port).start())
        (tmp_path / "hall").mkdir()
        hall = Mosquitto(tmp_path / "hall", persistence=False)
        hall.start()
        bridge = CityBridge(  # (its own process in a hall: `hallq bridge`)
            "test-hall",
            BrokerConfig(url=hall.url),
            city_broker(
                ",".join(f"127.0.0.1:{link.port}" for link in links[1:]),
                cafile=city.cafile,
                username="hall-test-hall",
                password="hall-pw",
            ),
            ["haizhu"],
        )
        bridging = asyncio.ensure_future(bridge.run(bridge_stop))

        # the bureau's view and the neighbour hall, straight on city node 2 (not cut)
        seen: queue.Queue[m.QueueState] = queue.Queue()

        def city_client(user: str, password: str) -> paho.Client:
            client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=f"{user}-probe", protocol=paho.MQTTv311
            )
            client.tls_set(ca_certs=str(city.cafile))
            client.username_pw_set(user, password)
            client.connect("127.0.0.1", city.mqtt_ports[2])
            client.loop_start()
            clients.append(client)
            return client

        bureau = city_client("bureau", "bureau-pw")
        bureau.on_message = lambda c, u, msg: seen.put(m.decode(m.QueueState, bytes(msg.payload)))
        bureau.on_connect = lambda c, u, f, rc, p: c.subscribe(T.queue_state("tax-filing"), 0)
        haizhu = city_client("hall-haizhu", "hz-pw")

        cfg = web_hall(hall.url, str(tmp_path / "state"))
        cfg = cfg.model_copy(
            update={"city": CityConfig(nearby=[NearbyHall(hall="haizhu", name="海珠")])}
        )
        log_path = tmp_path / "log.sqlite"
        bureau_waiting = {"n": -1}

        def bureau_sees(n: int) -> bool:
            while not seen.empty():
                bureau_waiting["n"] = seen.get().waiting
            return bureau_waiting["n"] == n

        async with (
            running(cfg, log_path, FakeClock()) as c,
            device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        ):
            await dispenser.wait_connected(10)
            shipper = Shipper(
                "test-hall",
                log_path,
                dsn_with(city_dsn, port=db_link.port),
                idle=0.1,
                backoff_max=1.0,
                connect_timeout=2,
            )
            ship = threading.Thread(target=shipper.run, args=(stop,), daemon=True)
            ship.start()

            async def issue(n: int) -> None:
                for _ in range(n):
                    reply = await dispenser.request(
                        T.req("pi-d1"),
                        m.IssueRequest(kind="issue", service="tax-filing"),
                        timeout=10,
                    )
                    assert reply.ok  # online, from the coordinator, whatever the city does

            rev = 0

            async def neighbour_known() -> None:
                nonlocal rev
                async with asyncio.timeout(30):
                    while not (c.nearby.fresh and ("haizhu", "tax-filing") in c.nearby.queues):
                        rev += 1
                        state = m.QueueState(rev=rev, service="tax-filing", waiting=0, eta_min=0)
                        haizhu.publish(
                            HallTopics("haizhu").queue_state("tax-filing"), m.encode(state), 1
                        )
                        await asyncio.sleep(0.5)

            await neighbour_known()
            await issue(5)
            await until(lambda: shipped(city_dsn)[2] == c.queue.seq, 30, "shipped before the cut")
            await until(lambda: bureau_sees(5), 30, "the bureau sees 5 waiting")

            for link in links:
                link.cut()
            await until(lambda: c.nearby.link is False, 20, "the bridge noticed the cut")
            await issue(10)  # the hall goes on: tickets issued online
            await until(
                lambda: (
                    (mark := read_mark(mark_path(log_path))) is not None and mark.error is not None
                ),
                20,
                "the shipper noticed the cut",
            )
            behind = shipped(city_dsn)[2]
            assert behind is not None
            assert behind < c.queue.seq  # the city is behind, the hall is not
            assert not bureau_sees(15)

            for link in links:
                link.restore()
            await until(lambda: shipped(city_dsn)[2] == c.queue.seq, 60, "shipping caught up")
            rows, distinct, cursor = shipped(city_dsn)
            assert rows == distinct == cursor == c.queue.seq  # nothing lost, nothing twice
            await until(lambda: c.nearby.link is True, 60, "the bridge is back")
            # the summaries published while cut are replaced by the next one, once back
            await issue(1)
            await until(lambda: bureau_sees(16), 30, "the bureau sees the hall as it is")
            await neighbour_known()
            stop.set()
            await asyncio.to_thread(ship.join, 15)
            shipper.close()
    finally:
        stop.set()
        bridge_stop.set()
        if bridging is not None:
            await asyncio.wait_for(bridging, 15)
        for client in clients:
            client.disconnect()
            client.loop_stop()
        if hall is not None:
            hall.kill()
        for link in links:
            await link.close()
        city.stop()


async def test_the_shipper_knocks_and_retries_as_soon_as_the_database_answers_again(
    city_dsn: str,
) -> None:
    """Between retries the shipper knocks on the database's port (an SSLRequest, which
    PostgreSQL answers before any login): through a cut link nothing answers (the relay
    accepts and closes at once), and once the link is back it retries at once instead of
    sleeping out its backoff."""
    from city.ship import Shipper, database_answers

    pg = psycopg_module().conninfo.conninfo_to_dict(city_dsn)
    host, port = str(pg.get("host", "127.0.0.1")), int(str(pg.get("port", 5432)))
    assert await asyncio.to_thread(database_answers, (host, port), 2.0)
    link = await LinkCut(host, port).start()
    try:
        link.cut()
        assert not await asyncio.to_thread(database_answers, ("127.0.0.1", link.port), 2.0)
        shipper = Shipper("h", Path("/nonexistent/log.sqlite"), dsn_with(city_dsn, port=link.port))
        stop = threading.Event()
        waiting = asyncio.ensure_future(asyncio.to_thread(shipper._wait_knocking, stop, 30.0))
        await asyncio.sleep(1.5)
        assert not waiting.done()  # still cut: it waits
        link.restore()
        started = time.monotonic()
        async with asyncio.timeout(10):
            assert await waiting  # answered: retry now
        assert time.monotonic() - started < 3
    finally:
        await link.close()
