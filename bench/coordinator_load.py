"""Coordinator throughput: closed-loop knee and CPU per command, against an echo floor.

A private Mosquitto (TCP_NODELAY, no logging) carries the load of the example hall's
devices: ``C`` commands are always outstanding, half of them ticket requests from the
dispensers and half CALLs from the window pads, each answered before the next is sent
(closed loop). The load generator speaks MQTT 3.1.1 by hand on one socket in this process
(one connection for every device: the private broker has no ACL; ``--load paho`` uses
paho's threaded client instead), so the figures are the coordinator's, not a client
library's, and the generator takes as little of the machine's two cores as it can. Two
responders take the same load in the same run:

- floor: an aiomqtt echo on the same broker, answering every request with its ``corr`` and
  nothing else (``python bench/coordinator_load.py --echo URL HALL``);
- hallq: ``hallq coordinator`` on a fresh event log, every command logged (SQLite
  synchronous=FULL) and every view published.

For each concurrency it prints commands/s, reply latency p50/p99 and the responder's CPU per
command (its /proc utime+stime over the step, with the children it waited for: the
coordinator's forked checkpoints), and beside it the broker's and the load generator's
CPU per command, so the machine's budget per command is on the line; the knee is the best
throughput whose p99 is within 50 ms. ``--day N`` then drives N more commands at one
concurrency through the same day and prints throughput and CPU per slice, to show whether
the cost grows with the day.
``--profile FILE`` runs py-spy (when installed) on the coordinator during the busiest step.

(Named so, not ``coordinator.py``: run as a script, bench/ comes first on the path and
that name would shadow the ``coordinator`` package.)

Usage: python bench/coordinator_load.py [--steps 1,4,8,16,32,64,128,256] [--seconds 3] [--day 20000]
       [--load raw|paho] [--tree CHECKOUT] [--profile flame.svg] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hallq.bus import NODELAY
from hallq.config import HallConfig, parse_config
from hallq.paho_batch import remaining_length
from hallq.topics import HallTopics
from hallq.ulid import new_ulid
from hallqctl.mosquitto import Mosquitto, free_port

ROOT = Path(__file__).resolve().parent.parent
P99_BAR_MS = 50.0
TICKS = os.sysconf("SC_CLK_TCK")


def hall_text(url: str, state: Path) -> str:
    """The example hall, open around the clock, with room for a long day: every service
    issues at any hour, to 5 digits, without caps, and the per-client rate limit is out of
    the way (one generator speaks for every device)."""
    text = (ROOT / "examples" / "liwan.toml").read_text(encoding="utf-8")
    text = text.replace("http_port = 8080", "http_port = 0")
    text = re.sub(r"(?m)^open_hours = .*$", 'open_hours = [["00:01", "23:59"]]', text)
    text = re.sub(r"(?m)^reset_time = .*$", 'reset_time = "00:00"', text)
    text = re.sub(r"(?m)^(hours|daily_cap|warn_at|width) = .*$", "", text)
    text = re.sub(r"(?m)^(prefix = .*)$", r"\1\nwidth = 5", text)
    # one generator plays every clerk, faster than any: no call is held for its holder
    text = re.sub(r"(?m)^call_hold_s = .*$", "call_hold_s = 0", text)
    return (
        text
        + f'\n[broker]\nurl = "{url}"\n\n[runtime]\nstate_dir = "{state}"\nlog_level = "WARNING"\n'
        + "\n[security]\nclient_rate_per_s = 10000\nclient_burst = 100000\n"
        + "issue_rate_per_min = 100000\nissue_burst = 100000\n"  # a crowd per kiosk, likewise
    )


def quiet_broker(work: Path) -> Mosquitto:
    """Mosquitto as the tests start it, but logging nothing per message."""
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        "persistence false\nlog_dest none\nmax_inflight_messages 0\nmax_queued_messages 0\n"
        "user root\n"
    )
    broker = Mosquitto(work, config=conf, port=port)
    broker.start()
    return broker


def cpu_s(pid: int) -> float:
    """utime + stime of a process and of its children it waited for (the coordinator's
    forked checkpoints), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def _nodelay(client: paho.Client, userdata: Any, sock: paho.SocketLike) -> None:
    assert isinstance(sock, socket.socket)  # plain TCP here
    sock.setsockopt(*NODELAY[0])


@dataclass
class Step:
    concurrency: int
    commands: int
    seconds: float
    latencies: list[float] = field(repr=False)
    cpu_s: float
    broker_s: float = 0.0
    load_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.commands / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / max(1, self.commands) * 1000

    @property
    def broker_ms(self) -> float:
        return self.broker_s / max(1, self.commands) * 1000

    @property
    def load_ms(self) -> float:
        return self.load_s / max(1, self.commands) * 1000

    def row(self) -> dict[str, float]:
        return {
            "concurrency": self.concurrency,
            "rate": round(self.rate, 1),
            "p50_ms": round(self.pct(0.5), 2),
            "p99_ms": round(self.pct(0.99), 2),
            "cpu_ms": round(self.cpu_ms, 3),
            "broker_cpu_ms": round(self.broker_ms, 3),
            "load_cpu_ms": round(self.load_ms, 3),
        }


class Load:
    """The devices of a hall, as one connection: a closed loop of ``concurrency``
    commands, each replaced by the next when its reply arrives. This one speaks MQTT 3.1.1
    by hand over a plain socket (commands at QoS 1, replies subscribed at QoS 1 and
    acknowledged), ~4x less CPU per command than paho's threaded client, so the machine's
    two cores go to the responder and the broker being measured; ``PahoLoad`` is the
    same devices through paho."""

    def __init__(self, cfg: HallConfig, port: int, broker_pid: int = 0) -> None:
        self.broker_pid = broker_pid
        t = HallTopics(cfg.hall.id)
        self.dispensers = [
            (t.req(a.id), code)
            for a in cfg.agents
            if a.role == "dispenser"
            for code in cfg.services_for_agent(a.id)
        ]
        self.pads = [
            (t.cmd("window", a.id), w)
            for a in cfg.agents
            if a.role == "window"
            for w in cfg.windows_for_agent(a.id)
        ]
        self.refused: Counter[str] = Counter()
        self.rng = random.Random(7)
        self.pending: dict[str, float] = {}
        self.latencies: list[float] = []
        self.running = False
        self.sent = 0
        self.lock = threading.Lock()
        self.idle = threading.Event()
        self._connect(port, f"hallq/v1/{cfg.hall.id}/+/+/reply")

    def _connect(self, port: int, replies: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(*NODELAY[0])
        self.out = bytearray()
        self.mid = 0
        client_id = f"load-{new_ulid()}".encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + _field(client_id)  # clean, no keepalive
        self.sock.sendall(b"\x10" + remaining_length(len(body)) + body)
        sub = b"\x00\x01" + _field(replies.encode()) + b"\x01"
        self.sock.sendall(b"\x82" + remaining_length(len(sub)) + sub)
        self.buf = b""
        for wanted in (0x20, 0x90):  # CONNACK, SUBACK
            kind, _ = self._packet()
            if kind != wanted:
                raise RuntimeError(f"broker answered packet type {kind:#x}, not {wanted:#x}")
        self.reader = threading.Thread(target=self._read, name="load-reader", daemon=True)
        self.reader.start()

    def _packet(self) -> tuple[int, bytes]:
        """The next whole packet (blocking; before the reader thread runs)."""
        while True:
            found = _packet_at(self.buf, 0)
            if found is not None:
                first, start, end = found
                body, self.buf = self.buf[start:end], self.buf[end:]
                return first & 0xF0, body
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the broker closed the connection")
            self.buf += data

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 18)
            except OSError:
                return
            if not data:
                return
            buf += data
            payloads = []
            acks = []
            at = 0
            while (found := _packet_at(buf, at)) is not None:
                first, start, at = found
                if first >> 4 == 3:  # PUBLISH: a reply
                    j = start + 2 + int.from_bytes(buf[start : start + 2], "big")
                    if first & 0x06:
                        acks.append(buf[j : j + 2])
                        j += 2
                    payloads.append(buf[j:at])
            buf = buf[at:]
            with self.lock:
                for mid in acks:
                    self.out += b"\x40\x02" + mid
                for payload in payloads:
                    self._replied(payload)
                self._flush()

    def _flush(self) -> None:
        if self.out:
            self.sock.sendall(self.out)
            self.out = bytearray()

    def _send(self, topic: str, body: bytes) -> None:
        self.mid = self.mid % 0xFFFF + 1
        rest = _field(topic.encode()) + self.mid.to_bytes(2, "big") + body
        self.out += b"\x32" + remaining_length(len(rest)) + rest

    def _next(self) -> None:
        ulid = new_ulid()
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.sent += 1
        if self.sent % 2:
            topic, service = self.rng.choice(self.dispensers)
            body = f'{{"v":1,"id":"{ulid}","ts":"{ts}","kind":"issue","service":"{service}"}}'
        else:
            topic, window = self.rng.choice(self.pads)
            body = f'{{"v":1,"id":"{ulid}","ts":"{ts}","window":{window},"action":"call"}}'
        self.pending[ulid] = time.perf_counter()
        self._send(topic, body.encode())

    def _replied(self, data: bytes | bytearray) -> None:
        """A reply arrived (under the lock): its command's latency, and the next one."""
        at = data.find(b'"corr":"')
        if at < 0:
            return
        corr = data[at + 8 : at + 34].decode()
        if b'"ok":false' in data:
            found = re.search(rb'"code":"(\w+)"', data)
            self.refused[found.group(1).decode() if found else "?"] += 1
        started = self.pending.pop(corr, None)
        if started is None:
            return
        self.latencies.append(time.perf_counter() - started)
        if self.running:
            self._next()
        elif not self.pending:
            self.idle.set()

    def _cpu(self, pid: int) -> tuple[float, float, float]:
        """CPU seconds so far of the responder, the broker and this load generator."""
        broker = cpu_s(self.broker_pid) if self.broker_pid else 0.0
        return cpu_s(pid), broker, time.process_time()

    def _begin(self, concurrency: int, pid: int) -> tuple[tuple[float, float, float], float]:
        """Start ``concurrency`` closed loops; the CPU and wall time they start at."""
        with self.lock:
            self.latencies = []
            self.idle.clear()
            self.running = True
            cpu0, t0 = self._cpu(pid), time.perf_counter()
            for _ in range(concurrency):
                self._next()
            self._flush()
        return cpu0, t0

    def _end(self, concurrency: int, pid: int, cpu0: tuple[float, float, float], t0: float) -> Step:
        """Stop sending: the step so far (replies, wall time, latencies, CPU spent)."""
        with self.lock:
            self.running = False
            elapsed, cpu = time.perf_counter() - t0, self._cpu(pid)
            spent = [b - a for a, b in zip(cpu0, cpu, strict=True)]
            return Step(concurrency, len(self.latencies), elapsed, self.latencies, *spent)

    def step(self, concurrency: int, seconds: float, pid: int, patience: float = 30) -> Step:
        cpu0, t0 = self._begin(concurrency, pid)
        time.sleep(seconds)
        step = self._end(concurrency, pid, cpu0, t0)
        if not self.idle.wait(patience):
            lost = len(self.pending)
            self.pending.clear()
            raise TimeoutError(f"{lost} command(s) never answered")
        return step

    def count(self, concurrency: int, commands: int, pid: int) -> Step:
        """Exactly ``commands`` replies' worth of load (the day's slices)."""
        cpu0, t0 = self._begin(concurrency, pid)
        deadline = time.monotonic() + 600
        while len(self.latencies) < commands and time.monotonic() < deadline:
            time.sleep(0.01)
        step = self._end(concurrency, pid, cpu0, t0)
        if not self.idle.wait(30):
            raise RuntimeError(f"{len(self.pending)} command(s) never answered")
        return step

    def close(self) -> None:
        self.sock.close()


class PahoLoad(Load):
    """The same devices through paho's threaded client (the figures before 2026-12-05)."""

    def _connect(self, port: int, replies: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{new_ulid()}")
        self.client.on_message = self._on_reply
        self.client.on_socket_open = _nodelay
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(replies, qos=1)
        self.client.loop_start()
        time.sleep(0.3)  # the SUBACK is in; not part of any measurement

    def _send(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=1)

    def _flush(self) -> None:
        pass

    def _on_reply(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self._replied(msg.payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _packet_at(buf: bytes, at: int) -> tuple[int, int, int] | None:
    """(first byte, body start, body end) of the packet at ``at`` in ``buf``; None when it
    is not all there yet."""
    size, shift, i = 0, 0, at + 1
    while i < len(buf):
        byte = buf[i]
        size |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return (buf[at], i, i + size) if i + size <= len(buf) else None
        shift += 7
    return None


async def echo(url: str, hall: str) -> None:
    """The floor: every request answered with its ``corr`` by aiomqtt, nothing else."""
    import aiomqtt

    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier="echo", socket_options=NODELAY) as c:
        await c.subscribe(f"hallq/v1/{hall}/+/+/cmd", qos=1)
        await c.subscribe(f"hallq/v1/{hall}/+/+/req", qos=1)
        print("ready", flush=True)
        async for msg in c.messages:
            request = json.loads(bytes(msg.payload))
            reply = msg.topic.value.rsplit("/", 1)[0] + "/reply"
            await c.publish(
                reply, json.dumps({"corr": request["id"], "ok": True}, separators=(",", ":")), qos=1
            )


def start(argv: list[str], work: Path, name: str, tree: Path = ROOT) -> subprocess.Popen[bytes]:
    """``tree``: the checkout whose packages ``-m`` runs (the script's directory comes
    first on the path)."""
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=(work / f"{name}.log").open("ab"), cwd=tree
    )


def wait_answering(load: Load, pid: int, proc: subprocess.Popen[bytes]) -> None:
    """Until the responder answers one command (the coordinator replays, then subscribes)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the responder exited; see its log in the work directory")
        try:
            if load.step(1, 0.2, pid, patience=1).commands:
                return
        except TimeoutError:  # sent before it subscribed: lost, as a device's would be
            continue
    raise RuntimeError("the responder did not answer within 60 s")


def settle(pid: int, timeout: float = 60.0) -> None:
    """Until the responder is idle (under 5% of a core for half a second): the
    coordinator's start-up work in threads (comfort forecast, learning counter times)
    would otherwise be charged to the first step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_s(pid)
        time.sleep(0.5)
        if cpu_s(pid) - before < 0.025:
            return


def ladder(load: Load, pid: int, steps: list[int], seconds: float, label: str) -> list[Step]:
    out = []
    for c in steps:
        step = load.step(c, seconds, pid)
        print(
            f"{label:<12}{c:>6}{step.rate:>10.0f}{step.pct(0.5):>9.2f}{step.pct(0.99):>9.2f}"
            f"{step.cpu_ms:>10.3f}{step.broker_ms:>9.3f}{step.load_ms:>9.3f}",
            flush=True,
        )
        out.append(step)
    return out


def knee(steps: list[Step]) -> Step | None:
    within = [s for s in steps if s.pct(0.99) <= P99_BAR_MS and s.commands]
    return max(within, key=lambda s: s.rate) if within else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1,4,8,16,32,64,128,256", help="concurrencies to try")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each step")
    parser.add_argument("--day", type=int, default=0, help="then this many commands more")
    parser.add_argument("--day-concurrency", type=int, default=32)
    parser.add_argument("--profile", type=Path, help="py-spy flame graph of the busiest step")
    parser.add_argument(
        "--cprofile", type=Path, help="run the coordinator under cProfile, stats to this file"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--tree",
        type=Path,
        help="run the coordinator from this checkout instead (a before/after in one run)",
    )
    parser.add_argument(
        "--load",
        choices=("raw", "paho"),
        default="raw",
        help="the devices' client: MQTT by hand on a socket (default) or paho's",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--echo", nargs=2, metavar=("URL", "HALL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(echo(*args.echo))
        return 0
    steps = [int(s) for s in args.steps.split(",")]
    work = Path(tempfile.mkdtemp(prefix="hallq-bench-coord-"))
    broker = quiet_broker(work)
    config = work / "hall.toml"
    config.write_text(hall_text(broker.url, work / "state"), encoding="utf-8")
    cfg = parse_config(config.read_text(encoding="utf-8"), str(config))
    assert broker.proc is not None
    load = (PahoLoad if args.load == "paho" else Load)(cfg, broker.port, broker.proc.pid)
    results: dict[str, Any] = {}
    print(
        f"{'responder':<12}{'conc':>6}{'cmd/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms':>10}"
        f"{'broker':>9}{'load':>9}"
    )
    try:
        proc = start([sys.executable, __file__, "--echo", broker.url, cfg.hall.id], work, "echo")
        try:
            assert proc.stdout is not None
            proc.stdout.readline()  # "ready": subscribed
            wait_answering(load, proc.pid, proc)
            floor = ladder(load, proc.pid, steps, args.seconds, "aiomqtt-echo")
        finally:
            proc.kill()
            proc.wait()
        log = work / "events.sqlite"
        coord_argv = [sys.executable, "-m", "hallqctl.cli", "coordinator", "--config"]
        if args.cprofile:
            coord_argv[1:1] = ["-m", "cProfile", "-o", str(args.cprofile.resolve())]
        proc = start(
            [*coord_argv, str(config), "--log", str(log)],
            work,
            "coordinator",
            (args.tree or ROOT).resolve(),
        )
        try:
            wait_answering(load, proc.pid, proc)
            settle(proc.pid)
            hallq = ladder(load, proc.pid, steps, args.seconds, "coordinator")
            best = knee(hallq) or max(hallq, key=lambda s: s.rate)
            if args.profile:
                profile(load, proc.pid, best.concurrency, args.seconds, args.profile)
            day: list[Step] = []
            if args.day:
                day = through_the_day(load, proc.pid, args.day, args.day_concurrency)
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        load.close()
        broker.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    print(f"coordinator refusals (of every command sent): {dict(load.refused) or 'none'}")
    fk, hk = knee(floor), knee(hallq)
    print(
        f"knee (p99 <= {P99_BAR_MS:g} ms): coordinator "
        f"{hk.rate if hk else 0:.0f} cmd/s at {hk.cpu_ms if hk else 0:.3f} ms CPU/command; "
        f"aiomqtt echo {fk.rate if fk else 0:.0f} cmd/s at {fk.cpu_ms if fk else 0:.3f} ms"
    )
    if hk and fk:
        print(
            f"coordinator / echo: throughput {hk.rate / fk.rate:.2f}x, "
            f"CPU per command {hk.cpu_ms / fk.cpu_ms:.1f}x"
        )
    results = {
        "echo": [s.row() for s in floor],
        "coordinator": [s.row() for s in hallq],
        "knee_rate": round(hk.rate, 1) if hk else 0.0,
        "knee_cpu_ms": round(hk.cpu_ms, 3) if hk else None,
        "echo_knee_rate": round(fk.rate, 1) if fk else 0.0,
        "echo_knee_cpu_ms": round(fk.cpu_ms, 3) if fk else None,
        "ratio_rate": round(hk.rate / fk.rate, 3) if hk and fk else None,
        "ratio_cpu": round(hk.cpu_ms / fk.cpu_ms, 2) if hk and fk else None,
        "day": [s.row() for s in day],
        "refused": dict(load.refused),
        "loaded_machine": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(results))
    return 0


def through_the_day(load: Load, pid: int, commands: int, concurrency: int) -> list[Step]:
    """The same day carried on for ``commands`` more, in ten slices: flat or growing?"""
    slices = []
    per = max(1, commands // 10)
    print(f"through the day: {commands} commands at concurrency {concurrency}")
    print(f"{'slice':>12}{'cmd/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms':>10}")
    for k in range(10):
        step = load.count(concurrency, per, pid)
        print(
            f"{(k + 1) * per:>12}{step.rate:>10.0f}{step.pct(0.5):>9.2f}{step.pct(0.99):>9.2f}"
            f"{step.cpu_ms:>10.3f}",
            flush=True,
        )
        slices.append(step)
    rates = [s.rate for s in slices]
    print(
        f"last slice / first: throughput {rates[-1] / rates[0]:.2f}x, CPU per command "
        f"{slices[-1].cpu_ms / slices[0].cpu_ms:.2f}x (mean {statistics.fmean(rates):.0f}/s)"
    )
    return slices


def profile(load: Load, pid: int, concurrency: int, seconds: float, out: Path) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not installed: no profile (pip install py-spy)", file=sys.stderr)
        return
    duration = max(2, int(seconds * 2))
    formats = {".json": "speedscope", ".txt": "raw"}
    fmt = formats.get(out.suffix, "flamegraph")
    rec = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(duration),
            "-f",
            fmt,
            "-o",
            str(out),
            "-n",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    load.step(concurrency, duration + 1, pid)
    rec.wait(60)
    print(f"profile of the coordinator at concurrency {concurrency}: {out}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
