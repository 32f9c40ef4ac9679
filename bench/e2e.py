"""CALL -> call event -> board state, through the real coordinator, against 2-hop floors.

What a taxpayer waits for when staff press CALL, measured from outside as devices see it:
a pad's CALL goes to the broker, the coordinator logs it (SQLite, synchronous=FULL) and
publishes the call event and the retained board state, which a board receives. Two aiomqtt
clients in this process (TCP_NODELAY, on a private Mosquitto) play the devices, each
subscribed as its agent is: the pad (and the dispenser) to its replies, the zone board to
the board state and the call events. Each sample first issues a ticket (not timed) so that
there is someone to call, then waits SAMPLE_GAP_S (the issue's own states have gone out).

The floors, in the same run on the same broker (and the same disk: the event log's commit
of one entry, which every CALL includes, back-to-back and, as the CALLs come, after a pause):
the same two broker hops with nothing but an echo between them -- raw paho on both ends
(``bus_latency.raw_floor``) and aiomqtt on both ends (an aiomqtt echo process,
``coordinator_load.py --echo``). The aiomqtt floor is measured twice: back to back, and
paced as the CALLs are: one round trip after each CALL, after the same SAMPLE_GAP_S of
quiet, so that both see the machine as it was at that moment (a neighbour on the VM's
host moves both alike). The pause
is not free: on this project's VMs a round trip after 5 ms of quiet took ~3x one right
after the last (0.97 against 0.3 ms at p50: each process, the broker too, is woken from
idle), and so does the log's commit (~1 ms against 0.07). A CALL always comes after such
a pause, so the goal of issue 19 (CALL -> board state p99 within 2x the aiomqtt floor) is
judged against the paced floor; the ratio to the back-to-back one is printed beside it.

Usage: python bench/e2e.py [--n 300] [--gap-ms 5] [--tree CHECKOUT] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
from bus_latency import raw_floor
from coordinator_load import hall_text, quiet_broker

from coordinator.eventlog import EventLog
from hallq.bus import NODELAY
from hallq.config import parse_config
from hallq.topics import HallTopics
from hallq.ulid import new_ulid

HERE = Path(__file__).resolve().parent
SAMPLE_GAP_S = 0.005  # each CALL waits this long after its ticket's issue was answered
ECHO_REPLIES = "hallq/v1/floor/+/+/reply"
COORDINATOR = [sys.executable, "-m", "hallqctl.cli", "coordinator"]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(pct(samples, 0.99), 3),
        "n": len(samples),
    }


def ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Devices:
    """A pad, a dispenser and a board in one aiomqtt client: every message it gets is
    stamped on arrival and handed to whoever waits for it."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.arrived: list[tuple[float, str, dict[str, Any]]] = []
        self.news = asyncio.Event()

    async def listen(self) -> None:
        async for msg in self.client.messages:
            at = time.perf_counter()
            self.arrived.append((at, msg.topic.value, json.loads(bytes(msg.payload))))
            self.news.set()

    async def until(self, match: Any, since: int = 0, patience: float = 10) -> tuple[float, Any]:
        async with asyncio.timeout(patience):
            while True:
                for at, topic, body in self.arrived[since:]:
                    if match(topic, body):
                        return at, body
                self.news.clear()
                await self.news.wait()


@contextlib.contextmanager
def echo_responder(url: str, work: Path) -> Iterator[None]:
    """The aiomqtt echo (``coordinator_load.py --echo``) on the broker, for the floor."""
    echo = subprocess.Popen(
        [sys.executable, str(HERE / "coordinator_load.py"), "--echo", url, "floor"],
        stdout=subprocess.PIPE,
        stderr=(work / "echo.log").open("ab"),
    )
    try:
        assert echo.stdout is not None
        echo.stdout.readline()
        yield
    finally:
        echo.kill()
        echo.wait()


async def echo_round_trip(c: aiomqtt.Client, dev: Devices) -> float:
    """aiomqtt -> broker -> aiomqtt echo -> broker -> aiomqtt; ``c`` subscribed to
    ``ECHO_REPLIES``."""
    ulid = new_ulid()
    body = f'{{"v":1,"id":"{ulid}","ts":"{ts()}","window":1,"action":"call"}}'
    mark = len(dev.arrived)
    start = time.perf_counter()
    await c.publish("hallq/v1/floor/window/pad/cmd", body, qos=1)
    at, _ = await dev.until(lambda t, b, u=ulid: b.get("corr") == u, mark)
    return at - start


async def aiomqtt_floor(url: str, n: int, work: Path) -> list[float]:
    """The echo's round trips back to back."""
    with echo_responder(url, work):
        host, port = url.removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(host, int(port), socket_options=NODELAY) as c:
            dev = Devices(c)
            await c.subscribe(ECHO_REPLIES, qos=1)
            listener = asyncio.create_task(dev.listen())
            samples = [await echo_round_trip(c, dev) for _ in range(n + 10)]
            listener.cancel()
            return samples[10:]  # the first ones warm up connections and caches


async def coordinator_path(
    url: str, config: Path, n: int, gap_s: float = SAMPLE_GAP_S
) -> dict[str, list[float]]:
    cfg = parse_config(config.read_text(encoding="utf-8"), str(config))
    t = HallTopics(cfg.hall.id)
    pad_agent = next(a.id for a in cfg.agents if a.role == "window")
    window = cfg.windows_for_agent(pad_agent)[0]
    skills = next(w for w in cfg.windows if w.number == window).weights()
    dispenser, service = next(
        (a.id, code)
        for a in cfg.agents
        if a.role == "dispenser"
        for code in cfg.services_for_agent(a.id)
        if code in dict(skills)
    )
    host, port = url.removeprefix("mqtt://").split(":")
    out: dict[str, list[float]] = {"reply": [], "call_event": [], "board_state": [], "floor": []}
    async with (
        aiomqtt.Client(host, int(port), socket_options=NODELAY) as c,
        aiomqtt.Client(host, int(port), socket_options=NODELAY) as b,
    ):
        dev, board = Devices(c), Devices(b)
        await c.subscribe(t.reply("dispenser", dispenser), qos=1)
        await c.subscribe(t.reply("window", pad_agent), qos=1)
        await c.subscribe(ECHO_REPLIES, qos=1)
        await b.subscribe(t.event("call"), qos=1)
        await b.subscribe(t.board_state(), qos=1)
        listeners = [asyncio.create_task(d.listen()) for d in (dev, board)]
        deadline = time.monotonic() + 60
        for k in range(n + 10):
            ulid = new_ulid()
            body = f'{{"v":1,"id":"{ulid}","ts":"{ts()}","kind":"issue","service":"{service}"}}'
            mark = len(dev.arrived)
            await c.publish(t.req(dispenser), body, qos=1)
            try:
                await dev.until(lambda _, b, u=ulid: b.get("corr") == u, mark, patience=2)
            except TimeoutError:  # the coordinator was not subscribed yet
                if time.monotonic() > deadline:
                    raise
                continue
            await asyncio.sleep(gap_s)  # the issue's own states have gone out
            ulid = new_ulid()
            body = f'{{"v":1,"id":"{ulid}","ts":"{ts()}","window":{window},"action":"call"}}'
            mark, seen = len(dev.arrived), len(board.arrived)
            start = time.perf_counter()
            await c.publish(t.cmd("window", pad_agent), body, qos=1)
            replied, _ = await dev.until(lambda _, b, u=ulid: b.get("corr") == u, mark)
            called, event = await board.until(
                lambda topic, b: topic == t.event("call") and b.get("window") == window, seen
            )
            number = event["ticket"]
            shown, _ = await board.until(
                lambda topic, b, n=number: (
                    topic == t.board_state()
                    and bool(b.get("calls"))
                    and b["calls"][0]["ticket"] == n
                ),
                seen,
            )
            await asyncio.sleep(gap_s)  # and the floor, paced the same, between CALLs
            floor = await echo_round_trip(c, dev)
            if k >= 10:
                out["reply"].append(replied - start)
                out["call_event"].append(called - start)
                out["board_state"].append(shown - start)
                out["floor"].append(floor)
        for listener in listeners:
            listener.cancel()
    return out


def commit_floor(path: Path, n: int, gap_s: float = 0.0) -> list[float]:
    """One CALL's entry committed by the event log itself (``EventLog``: WAL,
    synchronous=FULL, its table's indexes), alone, on the same disk: the part of every
    CALL that is the disk's. ``gap_s`` apart, as the CALLs come (each after its ticket's
    issue and a pause): on this project's VMs such a commit took ~0.3 ms at p50 after a
    pause and ~0.2 ms back-to-back (the machine waking for the write)."""
    log = EventLog(path)
    samples = []
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        ulid = new_ulid()
        log.stage(
            kind="window",
            cmd_id=ulid,
            day="2026-12-07",
            at=time.time(),
            source="window/pi-w01",
            payload=f'{{"v":1,"id":"{ulid}","ts":"{ts()}","window":1,"action":"call"}}',
            result={"ok": True, "error": None, "ticket": "A001", "info": None, "lease": None},
        )
        start = time.perf_counter()
        log.commit()
        samples.append(time.perf_counter() - start)
    log.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="samples of each")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=SAMPLE_GAP_S * 1000,
        help="quiet before each CALL and its paced floor (0: back to back; a CALL then meets "
        "a warm disk, and a checkpoint's fork every 500 entries)",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        help="run the coordinator from this checkout instead (a before/after in one sitting)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hallq-bench-e2e-"))
    broker = quiet_broker(work)
    config = work / "hall.toml"
    config.write_text(hall_text(broker.url, work / "state"), encoding="utf-8")
    results: dict[str, dict[str, float]] = {}
    try:
        results["sqlite_commit"] = summary(commit_floor(work / "floor.sqlite", args.n))
        results["sqlite_commit_idle"] = summary(
            commit_floor(work / "idle.sqlite", args.n, gap_s=args.gap_ms / 1000)
        )
        print(f"paho 2-hop floor: {args.n} round trips...", file=sys.stderr)
        results["paho_floor"] = summary(raw_floor(broker.port, args.n))
        print(f"aiomqtt 2-hop floor: {args.n} round trips...", file=sys.stderr)
        results["aiomqtt_floor"] = summary(asyncio.run(aiomqtt_floor(broker.url, args.n, work)))
        proc = subprocess.Popen(
            [*COORDINATOR, "--config", str(config), "--log", str(work / "events.sqlite")],
            stdout=subprocess.DEVNULL,
            stderr=(work / "coordinator.log").open("ab"),
            cwd=(args.tree or HERE.parent).resolve(),
        )
        try:
            print(f"coordinator: {args.n} CALLs, each and an echo round trip...", file=sys.stderr)
            with echo_responder(broker.url, work):
                got = asyncio.run(
                    coordinator_path(broker.url, config, args.n, gap_s=args.gap_ms / 1000)
                )
            results["aiomqtt_floor_paced"] = summary(got.pop("floor"))
            for name, samples in got.items():
                results[f"call_{name}"] = summary(samples)
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        broker.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'path':<22}{'p50 ms':>10}{'p99 ms':>10}")
    for name, fig in results.items():
        print(f"{name:<22}{fig['p50_ms']:>10.3f}{fig['p99_ms']:>10.3f}")
    board = results["call_board_state"]
    floors = {
        "aiomqtt_paced": "aiomqtt_floor_paced",
        "aiomqtt": "aiomqtt_floor",
        "paho": "paho_floor",
    }
    ratios = {
        f"board_{q}_vs_{name}": board[f"{q}_ms"] / results[floor][f"{q}_ms"]
        for name, floor in floors.items()
        for q in ("p50", "p99")
    }
    shown = {
        name: ", ".join(f"{q} {ratios[f'board_{q}_vs_{name}']:.2f}x" for q in ("p50", "p99"))
        for name in floors
    }
    print(
        f"CALL -> board state / aiomqtt 2-hop floor paced as the CALLs: {shown['aiomqtt_paced']} "
        f"(goal p99 <= 2x); / back to back: {shown['aiomqtt']}; / paho floor: {shown['paho']}"
    )
    if args.json:
        print(json.dumps({**results, **{k: round(v, 3) for k, v in ratios.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
