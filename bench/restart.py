"""Restart: time from starting the coordinator process to its first answer, by log size.

The seed hall (``examples/liwan.toml``, 47 windows) on a private Mosquitto. Each log holds
a current business day of up to 20,000 entries (issues and calls, a busy day) and, for
bigger sizes, earlier days of the same shape (what retention keeps for analytics). A
SIGKILL leaves up to ``checkpoint_every`` - 1 entries after the last checkpoint; each
log is set up that way (the worst case), and once more with no checkpoint at all
(``--no-checkpoint``: what a start cost before checkpoints, a full replay of the day).

Measured: a dispenser client sends an issue request every 20 ms (each with a fresh id and
a short deadline) from the moment the process is spawned; time-to-answer is the first
reply's arrival minus the spawn. Python's start-up and imports are included: it is what
a hall waits for after a crash. Best, median and worst of ``--repeat`` starts per size;
beside them the coordinator's own CPU seconds until that reply (user + system, from
/proc: what the start costs whatever else the machine runs) and the floor, a bare
``python -c pass`` spawned and waited for in the same run (the ratio answer / floor
says how far above an empty interpreter's start a restart is, under the same load).
Each start ends with SIGTERM right after its answer; the time the process takes to exit
is reported too (its worker threads are still reading the log then). The project's
modules are byte-compiled first, as installing the wheel does: a checkout run with
PYTHONDONTWRITEBYTECODE (this machine sets it) compiles every module at every start,
~0.1 s of CPU no installed hall pays.

Usage: python bench/restart.py [--sizes 1000,20000,100000,1000000] [--repeat 3]
       [--checkpoint-only] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from coordinator.dispatch import load_core
from coordinator.eventlog import EventLog
from coordinator.hallqueue import HallQueue, checkpoint_every
from hallq import messages as m
from hallq.bus import Session
from hallq.config import HallConfig, parse_config
from hallq.errors import NotConnected, RequestTimeout
from hallqctl.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
DAY_EVENTS = 20_000


def hall_text(url: str, state: Path) -> str:
    text = (ROOT / "examples" / "liwan.toml").read_text(encoding="utf-8")
    text = text.replace("http_port = 8080", "http_port = 0")
    # the day is made by one loop calling at random windows: no call is held for its holder
    text = re.sub(r"(?m)^call_hold_s = .*$", "call_hold_s = 0", text)
    return text + f'\n[broker]\nurl = "{url}"\n\n[runtime]\nstate_dir = "{state}"\n'


def one_day(cfg: HallConfig, path: Path, events: int) -> None:
    """Today's entries through the real queue (issue, call), fsync off: set-up, not timed."""
    q = HallQueue(cfg, EventLog(path), load_core("auto"))
    q.log._db.execute("PRAGMA synchronous=OFF")
    rng = random.Random(1)
    day = cfg.hall.business_day(time.time())
    now = dt.datetime.combine(day, dt.time(9, 0), tzinfo=cfg.hall.tzinfo).timestamp()
    codes = [s.code for s in cfg.services]
    dispenser = next(a.id for a in cfg.agents if a.role == "dispenser")
    pads = {w: a.id for a in cfg.agents if a.role == "window" for w in cfg.windows_for_agent(a.id)}
    for done in range(events):
        now += 1.0
        if done % 2 == 0:
            q.submit(
                "ticket",
                "dispenser",
                dispenser,
                m.IssueRequest(kind="issue", service=rng.choice(codes)),
                now,
            )
        else:
            w = rng.choice(list(pads))
            q.submit("window", "window", pads[w], m.WindowAction(window=w, action="call"), now)
    q.log.close()


def add_history(path: Path, days: int) -> None:
    """Earlier days: today's entries copied back ``k`` days (new ids), as retention keeps."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    db.execute("CREATE TEMP TABLE today AS SELECT * FROM entries")
    db.execute("DELETE FROM entries")
    for k in range(days, 0, -1):
        db.execute(
            "INSERT INTO entries (kind, cmd_id, day, at, source, payload, result) "
            "SELECT kind, cmd_id || ':' || ?, date(day, ?), at - ? * 86400, source, payload, "
            "result FROM today ORDER BY seq",
            (k, f"-{k} days", k),
        )
    db.execute(
        "INSERT INTO entries (kind, cmd_id, day, at, source, payload, result) "
        "SELECT kind, cmd_id, day, at, source, payload, result FROM today ORDER BY seq"
    )
    db.execute("COMMIT")
    db.close()


def checkpoint_before_tail(cfg: HallConfig, path: Path, tail: int) -> None:
    """A checkpoint ``tail`` entries before the end, as a coordinator killed just before
    its next checkpoint leaves it: set the tail aside, recover, checkpoint, put it back."""
    db = sqlite3.connect(path, isolation_level=None)
    last = db.execute("SELECT max(seq) FROM entries").fetchone()[0]
    rows = db.execute(
        "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
        "WHERE seq > ? ORDER BY seq",
        (last - tail,),
    ).fetchall()
    db.execute("DELETE FROM entries WHERE seq > ?", (last - tail,))
    db.close()
    q = HallQueue(cfg, EventLog(path), load_core("auto"))
    q.recover()
    q.save_checkpoint(q.seq, q.checkpoint())
    q.log.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.executemany(
        "INSERT INTO entries (seq, kind, cmd_id, day, at, source, payload, result) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.close()


def build_log(cfg: HallConfig, path: Path, size: int, checkpoint: bool) -> None:
    today = min(size, DAY_EVENTS)
    one_day(cfg, path, today)
    if history := (size - today) // DAY_EVENTS:
        add_history(path, history)
    if checkpoint:
        # the worst case: a kill just before the next checkpoint (a day's entries are
        # half issues: one ticket each)
        checkpoint_before_tail(cfg, path, min(today - 1, checkpoint_every(today // 2) - 1))


def floor_s() -> float:
    """An empty interpreter's start and exit, spawned as the coordinator is."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Start:
    answer_s: float
    cpu_s: float
    stop_s: float


async def time_to_answer(config: Path, log: Path, work: Path) -> Start:
    """One start on a fresh broker (nothing queued from an earlier start)."""
    broker_dir = work / "broker"
    shutil.rmtree(broker_dir, ignore_errors=True)
    broker_dir.mkdir()
    broker = Mosquitto(broker_dir, persistence=False)
    broker.start()
    try:
        config.write_text(hall_text(broker.url, work / "state"), encoding="utf-8")
        cfg = parse_config(config.read_text(encoding="utf-8"), str(config))
        return await _time_to_answer(cfg, config, log, work)
    finally:
        broker.kill()


async def _time_to_answer(cfg: HallConfig, config: Path, log: Path, work: Path) -> Start:
    dispenser = next(a.id for a in cfg.agents if a.role == "dispenser")
    shutil.rmtree(work / "dev", ignore_errors=True)
    async with Session(
        cfg.broker,
        hall=cfg.hall.id,
        role="dispenser",
        client_id=dispenser,
        state_dir=work / "dev",
        backoff_initial=0.05,
        backoff_max=0.2,
    ) as dev:
        await dev.wait_connected(10)
        topic = dev.topics.req(dispenser)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hallqctl.cli",
                "coordinator",
                "--config",
                str(config),
                "--log",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(work / "coordinator.log").open("ab"),
        )
        asks: set[asyncio.Task[object]] = set()
        answer: tuple[float, float] | None = None
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"coordinator exited; see {work}/coordinator.log")
                asks.add(
                    asyncio.create_task(
                        dev.request(
                            topic,
                            m.IssueRequest(kind="issue", service=cfg.services[0].code),
                            timeout=60,
                        )
                    )
                )
                done, _ = await asyncio.wait(
                    asks, timeout=0.02, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    with contextlib.suppress(RequestTimeout, NotConnected):
                        task.result()
                        answer = (time.perf_counter() - started, cpu_s(proc.pid))
                    asks.discard(task)
                if answer is not None:
                    break
        finally:
            for task in asks:
                task.cancel()
            stopping = time.perf_counter()
            proc.terminate()
            try:
                proc.wait(30)
                stop = time.perf_counter() - stopping
            except subprocess.TimeoutExpired:  # timed already; its slow stop is in its log
                print(
                    f"coordinator did not stop within 30 s; killed (see {work}/coordinator.log)",
                    file=sys.stderr,
                    flush=True,
                )
                proc.kill()
                proc.wait(10)
                stop = float("inf")
        return Start(answer[0], answer[1], stop)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--checkpoint-only",
        action="store_true",
        help="skip the full-replay logs (a 1M-entry log takes minutes to build)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for package in ("hallq", "hallqctl", "coordinator"):
        compileall.compile_dir(ROOT / package, quiet=1)
    results: dict[str, dict[str, float | bool]] = {}
    with tempfile.TemporaryDirectory(prefix="hallq-restart-") as tmp:
        work = Path(tmp)
        config = work / "hall.toml"
        config.write_text(hall_text("mqtt://127.0.0.1:1883", work / "state"), encoding="utf-8")
        cfg = parse_config(config.read_text(encoding="utf-8"), str(config))
        for size in sizes:
            for checkpoint in (True,) if args.checkpoint_only else (True, False):
                log = work / f"events-{size}-{checkpoint}.sqlite"
                t0 = time.perf_counter()
                build_log(cfg, log, size, checkpoint)
                built = time.perf_counter() - t0
                original = log.read_bytes()
                starts: list[Start] = []
                floors: list[float] = []
                for _ in range(args.repeat):
                    log.write_bytes(original)  # the clean stop checkpointed; undo it
                    for extra in (
                        log.with_name(log.name + "-wal"),
                        log.with_name(log.name + "-shm"),
                    ):
                        extra.unlink(missing_ok=True)
                    floors.append(floor_s())
                    starts.append(await time_to_answer(config, log, work))
                times = [s.answer_s for s in starts]
                median, floor = statistics.median(times), statistics.median(floors)
                key = f"{size}{'' if checkpoint else '-no-checkpoint'}"
                results[key] = {
                    "events": size,
                    "checkpoint": checkpoint,
                    "best_s": min(times),
                    "median_s": median,
                    "max_s": max(times),
                    "cpu_median_s": statistics.median(s.cpu_s for s in starts),
                    "floor_s": floor,
                    "median_over_floor": median / floor,
                    "stop_max_s": max(s.stop_s for s in starts),
                }
                how = "checkpoint + tail" if checkpoint else "full replay"
                print(
                    f"{size:>9,} events, {how:>17}: time to answer best {min(times):.3f} s, "
                    f"median {median:.3f} s, max {max(times):.3f} s; CPU "
                    f"{results[key]['cpu_median_s']:.2f} s; {median / floor:.1f}x the floor "
                    f"({floor:.3f} s); stop max {results[key]['stop_max_s']:.1f} s  "
                    f"(log built in {built:.0f} s)",
                    flush=True,
                )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
