"""Request/reply round trip through hallq's Session versus the raw paho floor.

A dispenser's ticket request goes client -> broker -> coordinator -> broker -> client. This
measures that round trip on a private Mosquitto (two broker hops, QoS 1) three ways, in one
run so the ratios are fair:

- floor: two bare paho clients in threads echoing bytes, TCP_NODELAY on both sockets;
- hallq: Session.request() answered by a Session route, with contract lookup, strict
  pydantic validation and encoding on both ends;
- hallq with the broker's ``set_tcp_nodelay`` off (what a stock mosquitto.conf gives).

Usage: python bench/bus_latency.py [--n 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hallq import messages as m
from hallq.bus import Incoming, Session
from hallq.config import BrokerConfig
from hallq.topics import HallTopics
from hallqctl.mosquitto import Mosquitto

T = HallTopics("bench")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def raw_floor(port: int, n: int) -> list[float]:
    got = threading.Event()

    def nodelay(client: paho.Client, userdata: Any, sock: paho.SocketLike) -> None:
        assert isinstance(sock, socket.socket)  # a plain TCP connection here
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def client(name: str) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name)
        c.on_socket_open = nodelay
        c.connect("127.0.0.1", port)
        c.loop_start()
        return c

    echo = client("floor-echo")
    asker = client("floor-ask")

    def reply(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        c.publish("floor/rep", msg.payload, qos=1)

    echo.on_message = reply
    asker.on_message = lambda c, u, msg: got.set()
    echo.subscribe("floor/req", qos=1)
    asker.subscribe("floor/rep", qos=1)
    time.sleep(0.3)  # both SUBACKs in; not part of any measurement
    samples = []
    payload = m.encode(m.IssueRequest(kind="issue", service="tax-filing"))
    for _ in range(n):
        got.clear()
        start = time.perf_counter()
        asker.publish("floor/req", payload, qos=1)
        if not got.wait(5):
            raise RuntimeError("floor round trip lost a message")
        samples.append(time.perf_counter() - start)
    for c in (echo, asker):
        c.loop_stop()
        c.disconnect()
    return samples


async def hallq_round_trips(
    url: str, n: int, state: Path, ack_after_handler: bool = False
) -> list[float]:
    broker = BrokerConfig(url=url)

    async with (
        Session(
            broker,
            hall="bench",
            role="coordinator",
            client_id="coord",
            state_dir=state,
            ack_after_handler=ack_after_handler,
        ) as coord,
        Session(broker, hall="bench", role="dispenser", client_id="d1", state_dir=state) as disp,
    ):
        now = m._utcnow()

        async def answer(incoming: Incoming) -> None:
            req = incoming.payload
            await coord.publish(
                T.reply("dispenser", incoming.parts.client or ""),
                m.IssueReply(
                    kind="issue",
                    corr=req.id,
                    ok=True,
                    ticket=m.TicketInfo(
                        number="A001",
                        service=req.service,
                        priority=m.Priority.NORMAL,
                        issued_at=now,
                        people_ahead=3,
                        eta_min=4.5,
                    ),
                ),
            )

        await coord.subscribe(T.every("req", "dispenser"), answer)
        await coord.wait_connected(10)
        await disp.wait_connected(10)
        await disp.request(T.req("d1"), m.IssueRequest(kind="issue", service="a"), timeout=5)
        samples = []
        for _ in range(n):
            request = m.IssueRequest(kind="issue", service="tax-filing")
            start = time.perf_counter()
            await disp.request(T.req("d1"), request, timeout=5)
            samples.append(time.perf_counter() - start)
        return samples


def codec_us(n: int = 20000) -> dict[str, float]:
    cmd = m.WindowAction(window=15, action="call")
    data = m.encode(cmd)
    start = time.perf_counter()
    for _ in range(n):
        m.encode(cmd)
    enc = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        m.decode(m.WindowCommand, data)
    dec = (time.perf_counter() - start) / n * 1e6
    return {"encode_us": enc, "decode_us": dec, "bytes": float(len(data))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per variant")
    parser.add_argument(
        "--slow-n",
        type=int,
        default=40,
        help="round trips with the broker's TCP_NODELAY off (each ~40 ms)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results: dict[str, dict[str, float]] = {}
        for name, nodelay in (("fast", True), ("slow", False)):
            (work / name).mkdir()
            broker = Mosquitto(work / name, persistence=False, nodelay=nodelay)
            broker.start()
            try:
                if nodelay:
                    print(f"floor: {args.n} raw paho round trips...", file=sys.stderr)
                    results["floor"] = percentiles(raw_floor(broker.port, args.n))
                    print(f"hallq: {args.n} Session.request round trips...", file=sys.stderr)
                    results["hallq"] = percentiles(
                        asyncio.run(hallq_round_trips(broker.url, args.n, work / "s1"))
                    )
                    print(
                        f"hallq, responder acking after its handler (the coordinator's "
                        f"setting): {args.n} round trips...",
                        file=sys.stderr,
                    )
                    results["hallq_ack_after"] = percentiles(
                        asyncio.run(hallq_round_trips(broker.url, args.n, work / "s3", True))
                    )
                else:
                    print(
                        f"hallq, broker without set_tcp_nodelay: {args.slow_n} round trips...",
                        file=sys.stderr,
                    )
                    results["hallq_broker_nagle"] = percentiles(
                        asyncio.run(hallq_round_trips(broker.url, args.slow_n, work / "s2"))
                    )
            finally:
                broker.kill()
    codec = codec_us()

    print(f"{'variant':<24}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, figures in results.items():
        print(
            f"{name:<24}{figures['p50_ms']:>10.3f}{figures['p99_ms']:>10.3f}"
            f"{figures['mean_ms']:>10.3f}"
        )
    ratio = results["hallq"]["p50_ms"] / results["floor"]["p50_ms"]
    nagle = results["hallq_broker_nagle"]["p50_ms"] / results["hallq"]["p50_ms"]
    late_ack = results["hallq_ack_after"]["p50_ms"] / results["hallq"]["p50_ms"]
    print(f"hallq / raw paho floor (p50): {ratio:.2f}x")
    print(f"responder acking after its handler / on arrival (p50): {late_ack:.2f}x")
    print(f"broker without set_tcp_nodelay / with (p50): {nagle:.1f}x")
    print(
        f"WindowCommand: encode {codec['encode_us']:.2f} us, strict decode "
        f"{codec['decode_us']:.2f} us, {codec['bytes']:.0f} bytes"
    )
    if args.json:
        summary = {
            "floor_p50_ms": results["floor"]["p50_ms"],
            "hallq_p50_ms": results["hallq"]["p50_ms"],
            "hallq_p99_ms": results["hallq"]["p99_ms"],
            "nagle_p50_ms": results["hallq_broker_nagle"]["p50_ms"],
            "ack_after_p50_ms": results["hallq_ack_after"]["p50_ms"],
            "ratio_hallq_floor": ratio,
            "ratio_ack_after": late_ack,
            "ratio_nagle": nagle,
            **{f"codec_{k}": v for k, v in codec.items()},
        }
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
