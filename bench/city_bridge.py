"""City view delay: a hall's state change to a bureau viewer on the city broker.

A private three-node NATS city cluster (MQTT over TLS, JetStream, retained summaries
replicated on all three; ``city.testcluster``) and a hall Mosquitto bridged to it by the
city bridge (``city.bridge.CityBridge``, ``hallq bridge``'s work, here in a thread). The
coordinator's stand-in publishes a queue summary (QoS 1, retained) on the hall broker; a
viewer subscribed on another city node takes the time it arrives. Same run, the floor: the
same messages published by the hall's city user straight to the first city node (no hall
broker, no bridge).

Usage: python bench/city_bridge.py [--n 500] [--rate 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from city.bridge import CityBridge, city_broker
from city.testcluster import BridgeThread, NatsCityCluster
from hallq import messages as m
from hallq.config import BrokerConfig
from hallq.topics import HallTopics
from hallqctl.mosquitto import Mosquitto

TOPIC = HallTopics("liwan").queue_state("tax-filing")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def client(
    name: str,
    port: int,
    *,
    cafile: Path | None = None,
    user: str | None = None,
    password: str | None = None,
) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv311)
    if cafile is not None:
        c.tls_set(ca_certs=str(cafile))
    if user is not None:
        c.username_pw_set(user, password)
    connected = threading.Event()
    c.on_connect = lambda *_: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(20):
        raise TimeoutError(f"{name} did not connect to port {port}")
    return c


def run(
    publisher: paho.Client,
    arrivals: queue.Queue[tuple[float, bytes]],
    n: int,
    rate: float,
    first_rev: int,
) -> list[float]:
    sent: dict[bytes, float] = {}
    delays: list[float] = []
    for i in range(n):
        payload = m.encode(
            m.QueueState(rev=first_rev + i, service="tax-filing", waiting=i % 40, eta_min=2.0)
        )
        sent[payload] = time.perf_counter()
        publisher.publish(TOPIC, payload, qos=1, retain=True)
        time.sleep(1 / rate)
        while not arrivals.empty():
            at, got = arrivals.get_nowait()
            if got in sent:
                delays.append(at - sent.pop(got))
    deadline = time.monotonic() + 10
    while sent and time.monotonic() < deadline:
        try:
            at, got = arrivals.get(timeout=0.5)
        except queue.Empty:
            continue
        if got in sent:
            delays.append(at - sent.pop(got))
    if sent:
        raise RuntimeError(f"{len(sent)} of {n} summaries never reached the city")
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="state changes per variant")
    parser.add_argument("--rate", type=float, default=50.0, help="state changes per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hallq-city-bridge-") as tmp:
        work = Path(tmp)
        city = NatsCityCluster(work, {"liwan": "hall-pw"}, "bureau-pw")
        hall_dir = work / "hall"
        hall_dir.mkdir()
        hall: Mosquitto | None = None
        bridge: BridgeThread | None = None
        clients: list[paho.Client] = []
        try:
            city.start_all()  # the ports are final only once every node is up
            hall = Mosquitto(hall_dir, persistence=False)
            hall.start()
            city_link = city_broker(
                ",".join(city.addresses()),
                cafile=city.cafile,
                username="hall-liwan",
                password="hall-pw",
            )
            bridge = BridgeThread(CityBridge("liwan", BrokerConfig(url=hall.url), city_link))
            bridge.start()
            arrivals: queue.Queue[tuple[float, bytes]] = queue.Queue()
            viewer = client(
                "bureau-view",
                city.mqtt_ports[2],
                cafile=city.cafile,
                user="bureau",
                password="bureau-pw",
            )
            clients.append(viewer)
            viewer.on_message = lambda c, u, msg: arrivals.put(
                (time.perf_counter(), bytes(msg.payload))
            )
            viewer.subscribe("hallq/v1/+/state/#", 0)
            coordinator = client("coordinator", hall.port)
            clients.append(coordinator)
            run(coordinator, arrivals, 20, args.rate, 1)  # the bridge is up and warm
            bridged = run(coordinator, arrivals, args.n, args.rate, 100)
            direct = client(
                "hallq-bridge-liwan-direct",
                city.mqtt_ports[0],
                cafile=city.cafile,
                user="hall-liwan",
                password="hall-pw",
            )
            clients.append(direct)
            run(direct, arrivals, 20, args.rate, 100_000)
            floor = run(direct, arrivals, args.n, args.rate, 200_000)
        finally:
            for c in clients:
                c.disconnect()
                c.loop_stop()
            if bridge is not None:
                bridge.stop()
            if hall is not None:
                hall.kill()
            city.stop()

    result: dict[str, Any] = {"n": args.n, "rate_per_s": args.rate}
    result |= {f"bridged_{k}": v for k, v in percentiles(bridged).items()}
    result |= {f"direct_{k}": v for k, v in percentiles(floor).items()}
    result["p99_ratio"] = result["bridged_p99_ms"] / result["direct_p99_ms"]
    print(
        f"{args.n} queue summaries at {args.rate:g}/s, hall broker -> bridge -> city node 0 "
        "-> viewer on city node 2"
    )
    print(
        f"  via the bridge  p50 {result['bridged_p50_ms']:6.1f} ms  "
        f"p99 {result['bridged_p99_ms']:6.1f} ms  max {result['bridged_max_ms']:6.1f} ms"
    )
    print(
        f"  direct (floor)  p50 {result['direct_p50_ms']:6.1f} ms  "
        f"p99 {result['direct_p99_ms']:6.1f} ms  max {result['direct_max_ms']:6.1f} ms"
    )
    if args.json:
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()})
        )


if __name__ == "__main__":
    main()
