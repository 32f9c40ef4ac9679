"""Coordinator instructions per command (callgrind): a figure the machine's load cannot move.

``coordinator_load.py`` measures throughput and CPU time, which on a shared machine move
2-5x between identical runs. This runs the same coordinator on the same load (its broker,
hall and closed loop) under ``valgrind --tool=callgrind`` with instrumentation off until
the measured commands: it is switched on (``callgrind_control -i on``) for exactly those, and
the instructions executed are summed per thread (the event loop is thread 1; the writer
thread and the wait-estimate worker follow). Under valgrind the coordinator runs ~50x
slower, so keep the concurrency low (a command waiting seconds expires, which changes the
work): C=2 measures a small group per commit.

Usage: python bench/coordinator_instr.py [--concurrency 2] [--commands 400] [--warm 100]
       [--tree CHECKOUT] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coordinator_load import ROOT, Load, hall_text, quiet_broker, settle

from hallq.config import parse_config


def instructions(path: Path) -> int:
    """Self cost (Ir) summed over a callgrind file: the lines after a ``calls=`` line are
    inclusive costs of a call, counted where they were spent instead."""
    total, after_call = 0, False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("calls="):
            after_call = True
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
                continue
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                total += int(parts[1])
        else:
            after_call = False
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--commands", type=int, default=400, help="measured commands")
    parser.add_argument("--warm", type=int, default=100, help="commands before measuring")
    parser.add_argument("--keep", action="store_true", help="keep the callgrind files")
    parser.add_argument("--tree", type=Path, help="run the coordinator from this checkout")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="hallq-bench-instr-"))
    broker = quiet_broker(work)
    config = work / "hall.toml"
    config.write_text(hall_text(broker.url, work / "state"), encoding="utf-8")
    cfg = parse_config(config.read_text(encoding="utf-8"), str(config))
    load = Load(cfg, broker.port)
    out = work / "callgrind.out"
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "hallqctl.cli",
        "coordinator",
        "--config",
        str(config),
        "--log",
        str(work / "events.sqlite"),
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=(work / "coordinator.log").open("ab"),
        cwd=(args.tree or ROOT).resolve(),
    )
    try:
        deadline = time.monotonic() + 600
        while True:  # until it answers (uninstrumented: about as fast as without valgrind)
            if proc.poll() is not None:
                raise RuntimeError(f"the coordinator exited; see {work / 'coordinator.log'}")
            try:
                if load.step(1, 0.5, proc.pid, patience=20).commands:
                    break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        settle(proc.pid)
        load.count(args.concurrency, args.warm, proc.pid)
        settle(proc.pid)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True)
        step = load.count(args.concurrency, args.commands, proc.pid)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True)
    finally:
        proc.terminate()
        proc.wait(300)
        load.close()
        broker.kill()
    per_thread = [
        instructions(f) / step.commands / 1e6 for f in sorted(work.glob("callgrind.out-*"))
    ]
    if args.keep:
        print(f"callgrind files kept in {work} (callgrind_annotate them)", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{step.commands} commands at concurrency {args.concurrency}; refused: "
        f"{dict(load.refused) or 'none'}"
    )
    print(
        "M instructions per command, by thread (1: the event loop): "
        + ", ".join(f"{n + 1}: {v:.3f}" for n, v in enumerate(per_thread))
    )
    print(f"whole process: {sum(per_thread):.3f} M per command")
    if args.json:
        print(
            json.dumps(
                {
                    "commands": step.commands,
                    "concurrency": args.concurrency,
                    "per_thread_m": [round(v, 4) for v in per_thread],
                    "total_m": round(sum(per_thread), 4),
                    "refused": dict(load.refused),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
