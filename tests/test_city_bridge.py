"""The hall-to-city bridge (``hallq bridge``, a process of its own): what it forwards, and
that it keeps forwarding when a node of the three-node NATS city broker dies. Real
Mosquitto (the hall), real NATS (the city)."""

from __future__ import annotations

import itertools
import queue
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from city.bridge import (
    PUBLIC_SUMMARIES,
    BridgeError,
    CityBridge,
    city_broker,
    inbound_routes,
    nats_user,
    outbound_filters,
)
from city.testcluster import BridgeThread, NatsCityCluster, find_nats_server
from hallq import messages as m
from hallq.acl import hall_acl
from hallq.config import BrokerConfig
from hallq.topics import HallTopics
from hallqctl.mosquitto import Mosquitto, find_mosquitto

from .ci import missing

T = HallTopics("liwan")


def test_the_bridge_forwards_only_the_public_summaries_outbound() -> None:
    topics = outbound_filters("liwan")
    assert topics == [f"hallq/v1/liwan/{t}" for t, _ in PUBLIC_SUMMARIES]
    for never in ("cmd", "req", "reply", "status", "health", "error", "event", "#"):
        assert all(never not in t for t in topics), never
    city = city_broker(
        "a.city:8883, b.city:8883,c.city:8883",
        cafile=Path("/etc/hallq/ca.pem"),
        username="hall-liwan",
        password="pw",
    )
    assert city.addresses == ["a.city:8883", "b.city:8883", "c.city:8883"]  # tried in order


def test_the_bridge_login_reads_only_the_summaries_and_alone_writes_city(
    tmp_path: Path,
) -> None:
    """On the hall broker the bridge is an ordinary client (``city-bridge``): it reads
    only what it forwards, and nobody else may write under ``city/``."""
    from hallq.config import parse_config

    text = (Path(__file__).parent.parent / "examples" / "liwan.toml").read_text("utf-8")
    acl = hall_acl(parse_config(text, "liwan.toml"))
    block = acl.split("\nuser city-bridge\n")[1].split("\n\n")[0].splitlines()
    assert [b for b in block if b.startswith("topic write")] == [
        "topic write hallq/v1/liwan/city/#"
    ]
    reads = [b.split()[-1] for b in block if b.startswith("topic read")]
    assert reads == [*outbound_filters("liwan"), "hallq/v1/liwan/city/#"]
    writers = [
        line for line in acl.splitlines() if line.startswith("topic write") and "city" in line
    ]
    assert writers == ["topic write hallq/v1/liwan/city/#"]


def test_bad_bridge_options_name_the_option() -> None:
    with pytest.raises(BridgeError, match="--city 'city1'"):
        city_broker("city1", cafile=Path("ca"), username="u", password="p")
    with pytest.raises(BridgeError, match="--cafile"):
        city_broker("c:8883", cafile=None, username="u", password="p")
    with pytest.raises(BridgeError, match="--certfile and --keyfile"):
        city_broker("c:8883", cafile=Path("ca"), username="u", password="p", certfile=Path("c.pem"))


def test_the_city_user_may_publish_only_its_halls_summaries() -> None:
    entry = nats_user("liwan", "hall-liwan", "$2a$11$hash")
    assert '"hallq.v1.liwan.state.>"' in entry
    assert "$2a$11$hash" in entry
    assert "hallq.v1.*" not in entry
    assert '"hallq.>"' not in entry


@pytest.fixture
def city(tmp_path: Path) -> Iterator[NatsCityCluster]:
    if find_nats_server() is None or shutil.which("openssl") is None:
        missing("nats-server and openssl (.ci/run installs them)")
    cluster = NatsCityCluster(tmp_path, {"liwan": "hall-pw"}, "bureau-pw")
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop()


def city_client(
    city: NatsCityCluster, node: int, inbox: queue.Queue[paho.MQTTMessage]
) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bureau-{node}", protocol=paho.MQTTv311
    )
    client.tls_set(ca_certs=str(city.cafile))
    client.username_pw_set("bureau", city.bureau_password)
    subscribed = queue.Queue[int]()
    client.on_message = lambda c, u, msg: inbox.put(msg)
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.put(mid)
    # QoS 0: a live view needs no JetStream consumer per viewer (lighter, and nothing
    # to re-create when a node goes); the bridge still publishes at QoS 1
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("hallq/v1/+/state/#", 0)
    client.connect("127.0.0.1", city.mqtt_ports[node])
    client.loop_start()
    try:
        subscribed.get(timeout=20)
    except queue.Empty:
        client.disconnect()
        client.loop_stop()
        raise AssertionError(f"city node {node} took no subscription in 20 s") from None
    return client


def hall_client(broker: Mosquitto) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="coordinator", protocol=paho.MQTTv311
    )
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def queue_state(rev: int, waiting: int) -> bytes:
    return m.encode(m.QueueState(rev=rev, service="tax-filing", waiting=waiting, eta_min=3.0))


def wait_for(
    inbox: queue.Queue[paho.MQTTMessage], topic: str, payload: bytes, timeout: float
) -> list[str]:
    """Messages until the one expected arrives; returns the topics seen before it."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{topic} never reached the city; saw {seen}")
        try:
            msg = inbox.get(timeout=left)
        except queue.Empty:
            continue
        if msg.topic == topic and msg.payload == payload:
            return seen
        seen.append(msg.topic)


@pytest.mark.broker
def test_summaries_reach_the_city_through_a_node_failure_and_nothing_else_does(
    city: NatsCityCluster, tmp_path: Path
) -> None:
    if find_mosquitto() is None:
        missing("mosquitto")
    hall_dir = tmp_path / "hall"
    hall_dir.mkdir()
    hall = Mosquitto(hall_dir, persistence=False)
    hall.start()
    bridge = CityBridge(
        "liwan",
        BrokerConfig(url=hall.url),
        city_broker(
            ",".join(city.addresses()),
            cafile=city.cafile,
            username="hall-liwan",
            password="hall-pw",
        ),
    )
    inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
    bureau = city_client(city, 2, inbox)  # on the node that stays up
    coordinator = hall_client(hall)
    running = BridgeThread(bridge).start()
    try:
        topic = T.queue_state("tax-filing")
        first = queue_state(1, 7)
        coordinator.publish(topic, first, qos=1, retain=True)
        # a command, a presence and an event published before the next summary: had the
        # bridge forwarded them, the city would see them before that summary (one link, in order)
        coordinator.publish(
            T.cmd("window", "pi-w1"), m.encode(m.WindowAction(window=1, action="call")), qos=1
        )
        coordinator.publish(T.status("window", "pi-w1"), b"{}", qos=1, retain=True)
        coordinator.publish(T.event("call"), b"{}", qos=1)
        assert set(wait_for(inbox, topic, first, 30)) <= {topic}
        second = queue_state(2, 5)
        coordinator.publish(topic, second, qos=1, retain=True)
        assert set(wait_for(inbox, topic, second, 10)) <= {topic}

        city.kill(0)  # the node the bridge is connected to (the first address)
        quiet = queue_state(3, 0)
        t0 = time.monotonic()
        coordinator.publish(topic, quiet, qos=1, retain=True)
        # QoS 1 across the failover: what was in flight may come again (same topic; a
        # receiver drops what is not above the `rev` it has)
        assert set(wait_for(inbox, topic, quiet, 30)) <= {topic}
        print(
            f"the hall going quiet reached the city {time.monotonic() - t0:.1f} s after "
            f"its node was killed"
        )
        assert set(bridge.connections) - {city.addresses()[0]}  # it moved to another node

        # A newcomer to the city view gets the latest summary, retained on the two nodes
        # left. A retained write made during the failover's leader election can time out
        # (nats-server logs it), so this is the next summary the hall publishes; a node may
        # first hand over an older revision, which a receiver drops by `rev`. The cluster
        # may also drop the bridge's session once more while it settles (the bridge then
        # sends every summary again), so the hall goes on publishing until it is there.
        deadline = time.monotonic() + 40
        for rev in itertools.count(4):
            latest = queue_state(rev, 1)
            coordinator.publish(topic, latest, qos=1, retain=True)
            assert set(wait_for(inbox, topic, latest, 20)) <= {topic}
            late: queue.Queue[paho.MQTTMessage] = queue.Queue()
            # a session asked for while the cluster still elects the leaders node 0 held
            # is refused, and paho's own retries back off past any bound: a newcomer comes
            # once node 1 takes sessions again, and one refused all the same is tried anew
            city.wait_mqtt(1)
            try:
                newcomer = city_client(city, 1, late)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                continue
            try:
                assert set(wait_for(late, topic, latest, 5)) <= {topic}
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
            finally:
                newcomer.disconnect()
                newcomer.loop_stop()
    finally:
        running.stop()
        coordinator.disconnect()
        coordinator.loop_stop()
        bureau.disconnect()
        bureau.loop_stop()
        hall.kill()


@pytest.mark.broker
async def test_the_bureau_sees_a_hall_go_quiet_through_the_bridge_with_a_node_down(
    city: NatsCityCluster, tmp_path: Path
) -> None:
    import asyncio

    from city.bureau import CityBrokerLink, LiveCity, follow

    if find_mosquitto() is None:
        missing("mosquitto")
    hall_dir = tmp_path / "hall"
    hall_dir.mkdir()
    hall = Mosquitto(hall_dir, persistence=False)
    hall.start()
    bridge = CityBridge(
        "liwan",
        BrokerConfig(url=hall.url),
        city_broker(
            ",".join(city.addresses()),
            cafile=city.cafile,
            username="hall-liwan",
            password="hall-pw",
        ),
    )
    bridge_stop = asyncio.Event()
    bridging = asyncio.ensure_future(bridge.run(bridge_stop))
    city.kill(1)  # the bureau's first node is down from the start: it must move on
    links = [
        CityBrokerLink("127.0.0.1", city.mqtt_ports[i], "bureau", "bureau-pw", city.cafile)
        for i in (1, 2, 0)
    ]
    live = LiveCity()
    stop = asyncio.Event()
    follower = asyncio.ensure_future(follow(live, links, stop))
    coordinator = hall_client(hall)
    topic = T.queue_state("tax-filing")

    rev = 0

    async def publish_until_seen(waiting: int, eta: float) -> None:
        """Publish the summary as the coordinator would on each change, once a second, until
        the bureau has it: a retained write made while the cluster elects a new leader can
        time out (nats-server logs it), and the bureau may not have subscribed yet."""
        nonlocal rev
        async with asyncio.timeout(40):
            while True:
                rev += 1
                coordinator.publish(
                    topic,
                    m.encode(
                        m.QueueState(rev=rev, service="tax-filing", waiting=waiting, eta_min=eta)
                    ),
                    qos=1,
                    retain=True,
                )
                for _ in range(20):
                    best = live.least_crowded("tax-filing")
                    if best and best[0]["eta_min"] == eta:
                        return
                    await asyncio.sleep(0.05)

    try:
        await publish_until_seen(80, 25.0)
        assert live.halls["liwan"].waiting == 80
        await publish_until_seen(0, 0.0)
        assert live.halls["liwan"].waiting == 0
    finally:
        stop.set()
        bridge_stop.set()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await asyncio.wait_for(bridging, 15)
        coordinator.disconnect()
        coordinator.loop_stop()
        hall.kill()


def test_the_bridge_brings_in_only_the_nearby_halls_queues_under_city() -> None:
    assert inbound_routes("liwan", ["haizhu", "yuexiu"]) == [
        (f"hallq/v1/{h}/state/queue/+", f"hallq/v1/liwan/city/{h}/queue/")
        for h in ("haizhu", "yuexiu")
    ]
    assert inbound_routes("liwan") == []
    entry = nats_user("liwan", "hall-liwan", "$2a$11$hash", ["haizhu"])
    assert '"hallq.v1.haizhu.state.queue.*"' in entry  # reads only its neighbours' queues
    assert "hallq.v1.*" not in entry


@pytest.fixture
def two_halls(tmp_path: Path) -> Iterator[NatsCityCluster]:
    if find_nats_server() is None or shutil.which("openssl") is None:
        missing("nats-server and openssl (.ci/run installs them)")
    cluster = NatsCityCluster(
        tmp_path,
        {"liwan": "hall-pw", "haizhu": "hz-pw", "tianhe": "th-pw"},
        "bureau-pw",
        nearby={"liwan": ["haizhu"]},
    )
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.broker
def test_a_nearby_halls_queue_comes_in_and_the_link_state_follows_the_city(
    two_halls: NatsCityCluster, tmp_path: Path
) -> None:
    """Haizhu's summary, published to the city as its own bridge would, lands in Liwan's
    broker under city/haizhu/; Tianhe's (not a neighbour) does not; with the whole city
    gone, Liwan's broker says the link is 0."""
    city = two_halls
    if find_mosquitto() is None:
        missing("mosquitto")
    hall_dir = tmp_path / "hall"
    hall_dir.mkdir()
    hall = Mosquitto(hall_dir, persistence=False)
    hall.start()
    bridge = CityBridge(
        "liwan",
        BrokerConfig(url=hall.url),
        city_broker(
            ",".join(city.addresses()),
            cafile=city.cafile,
            username="hall-liwan",
            password="hall-pw",
        ),
        ["haizhu"],
    )
    running = BridgeThread(bridge).start()
    inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
    local = hall_client(hall)
    local.on_message = lambda c, u, msg: inbox.put(msg)
    local.subscribe("hallq/v1/liwan/city/#", 1)
    link = T.city_link()
    wait_for(inbox, link, b"1", 30)

    others = []
    for hall_id, pw in (("haizhu", "hz-pw"), ("tianhe", "th-pw")):
        other = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bridge-{hall_id}", protocol=paho.MQTTv311
        )
        other.tls_set(ca_certs=str(city.cafile))
        other.username_pw_set(f"hall-{hall_id}", pw)
        other.connect("127.0.0.1", city.mqtt_ports[1])
        other.loop_start()
        others.append(other)
    try:
        tianhe = HallTopics("tianhe").queue_state("tax-filing")
        haizhu = HallTopics("haizhu").queue_state("tax-filing")
        others[1].publish(tianhe, queue_state(1, 2), qos=1, retain=True).wait_for_publish(10)
        seen: list[str] = []
        # again until the bridge's subscription is in place (it subscribes after connecting)
        deadline = time.monotonic() + 30
        rev = 0
        while True:
            rev += 1
            summary = queue_state(rev, 3)
            others[0].publish(haizhu, summary, qos=1, retain=True).wait_for_publish(10)
            try:
                seen += wait_for(inbox, T.city_queue("haizhu", "tax-filing"), summary, 2)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "haizhu's queue never reached liwan"
        assert all("tianhe" not in t for t in seen)

        city.stop()
        wait_for(inbox, link, b"0", 60)
    finally:
        running.stop()
        for client in (local, *others):
            client.disconnect()
            client.loop_stop()
        hall.kill()


@pytest.mark.broker
async def test_a_cut_with_nothing_to_send_still_sets_the_link_to_0(tmp_path: Path) -> None:
    """The bridge notices a lost city connection by reading it, not only on its next
    publish: a quiet hall (at night) shows the link down at once, not at its next change."""
    import asyncio

    from city.testcluster import LinkCut

    if find_nats_server() is None or shutil.which("openssl") is None or find_mosquitto() is None:
        missing("nats-server, openssl and mosquitto (.ci/run installs them)")
    city = NatsCityCluster(tmp_path, {"liwan": "hall-pw"}, "bureau-pw", nodes=1)
    await asyncio.to_thread(city.start_all)
    (tmp_path / "hall").mkdir()
    hall = Mosquitto(tmp_path / "hall", persistence=False)
    hall.start()
    link = await LinkCut("127.0.0.1", city.mqtt_ports[0]).start()
    bridge = CityBridge(
        "liwan",
        BrokerConfig(url=hall.url),
        city_broker(
            f"127.0.0.1:{link.port}", cafile=city.cafile, username="hall-liwan", password="hall-pw"
        ),
    )
    stop = asyncio.Event()
    bridging = asyncio.ensure_future(bridge.run(stop))
    try:
        async with asyncio.timeout(30):
            await bridge.wait_link(True)
        link.cut()
        cut_at = time.monotonic()
        async with asyncio.timeout(10):
            await bridge.wait_link(False)
        assert bridge.link_changes[-1][0] - cut_at < 5  # not the 22 s keepalive timeout
    finally:
        stop.set()
        await asyncio.wait_for(bridging, 15)
        await link.close()
        hall.kill()
        city.stop()
