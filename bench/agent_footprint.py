"""What one Pi's agent costs: resident memory when idle and time from start to online.

For a window Pi's and a dispenser Pi's agent of the example hall, this starts the agent as
the Pi would (``hallq agent --device ID``, its own process) on simulated devices
(``python -m firmware_bridge.sim``, a separate process, as the hardware would be) and a
private Mosquitto, and measures:

- start to online: from spawning the process to its retained presence ``online`` arriving
  at another client (interpreter start, imports, config, serial lines, MQTT connect);
- idle RSS: VmRSS of the agent process after it has been online and idle for ``--idle`` s,
  with its PSS (shared pages split among the processes that map them: what the agent adds
  to a Pi running it next to others) and USS (its private pages: what stopping it frees);
- the imports: their total and the time spent in each package's own modules, from
  ``--runs`` more runs under ``python -X importtime`` (the median run's: one run's total
  swings by a third on a VM, 238 against 346 ms for the same agent).

The agent's packages are byte-compiled first, as installing the wheel does (pip compiles
at install): this machine sets PYTHONDONTWRITEBYTECODE, and a checkout run then compiled
every module of the agent at every start (~1.7 MB of RSS and ~0.1 s no Pi pays).

Usage: python bench/agent_footprint.py [--runs 3] [--idle 3] [--top 12] [--json]
Goal (issue 13): under 40 MB idle RSS and under 1.5 s to online on the dev machine.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hallq.examples import example_hall
from hallqctl.mosquitto import Mosquitto

AGENTS = {"window": "pi-w01", "dispenser": "pi-d01"}
PACKAGES = ("hallq", "hallqctl", "edge", "displays", "firmware_bridge")  # what an agent runs
HALL = "liwan"


class PresenceWatch:
    """A plain paho client that notes when each agent's retained presence says online."""

    def __init__(self, port: int) -> None:
        self.online: dict[str, float] = {}
        self._changed = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="footprint-watch")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"hallq/v1/{HALL}/+/+/status", qos=1)
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, message: paho.MQTTMessage) -> None:
        if b'"online"' in message.payload:
            with self._changed:
                self.online[message.topic.split("/")[-2]] = time.monotonic()
                self._changed.notify_all()

    def forget(self, agent: str) -> None:
        with self._changed:
            self.online.pop(agent, None)

    def wait(self, agent: str, timeout: float) -> float:
        with self._changed:
            if not self._changed.wait_for(lambda: agent in self.online, timeout):
                raise TimeoutError(f"{agent} not online within {timeout} s")
            return self.online[agent]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of a process, in MB (from /proc/PID/smaps_rollup)."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
    return {
        "rss": kb["Rss"] / 1024,
        "pss": kb["Pss"] / 1024,
        "uss": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
    }


def byte_compile(packages: tuple[str, ...] = PACKAGES) -> None:
    """Each package where this interpreter finds it (``PYTHONPATH`` selects another tree)."""
    for package in packages:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(location, quiet=1)


def start_sims(agent: str, sim_dir: Path) -> subprocess.Popen[bytes]:
    """The agent's serial devices on ptys, as ``hallq sim-devices`` serves them."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hallqctl.cli",
            "sim-devices",
            "--config",
            str(example_hall()),
            "--device",
            agent,
            "--sim-dir",
            str(sim_dir),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while not (sim_dir.is_dir() and any(sim_dir.iterdir())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            assert proc.stderr is not None
            raise RuntimeError(
                f"the simulated devices of {agent} did not start: "
                + proc.stderr.read().decode("utf-8", "replace")[-2000:]
            )
        time.sleep(0.05)
    time.sleep(0.5)  # every port of the agent, not just the first
    return proc


def run_agent(
    agent: str,
    sim_dir: Path,
    state: Path,
    url: str,
    watch: PresenceWatch,
    idle: float,
    importtime: bool = False,
    entry: str = "hallqctl.launch",
) -> tuple[float, dict[str, float], str]:
    env = {
        **os.environ,
        "HALLQ_BROKER_URL": url,
        "HALLQ_STATE_DIR": str(state),
        "HALLQ_ID_HASH_KEY": "footprint-bench-key-0001",
    }
    cmd = [
        sys.executable,
        *(["-X", "importtime"] if importtime else []),
        "-m",
        entry,  # hallqctl.launch: what the `hallq` console script runs
        "agent",
        "--config",
        str(example_hall()),
        "--device",
        agent,
        "--sim-dir",
        str(sim_dir),
        "--simulate-all",
    ]
    watch.forget(agent)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    errors: list[bytes] = []
    assert proc.stderr is not None
    stream = proc.stderr
    reader = threading.Thread(target=lambda: errors.append(stream.read()))
    reader.start()
    try:
        online = watch.wait(agent, 30) - started
        time.sleep(idle)
        rss = memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(10)
    return online, rss, b"".join(errors).decode("utf-8", "replace")


def import_total_ms(stderr: str) -> float:
    """All import time of the process (every module's own time, summed)."""
    return sum(
        int(found.group(1)) / 1000 for found in re.finditer(r"import time:\s+(\d+) \|", stderr)
    )


def top_imports(stderr: str, top: int) -> list[tuple[str, float]]:
    """Top-level packages by the import time spent in their own modules (self ms, summed
    over every module of the package wherever it was imported from)."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \| \s*(\S+)", line)
        if found:
            name = found.group(2).split(".")[0]
            totals[name] = totals.get(name, 0.0) + int(found.group(1)) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument(
        "--entry",
        default="hallqctl.launch",
        help="module run as `python -m ENTRY agent ...` (hallqctl.cli: an older tree's CLI)",
    )
    args = parser.parse_args()
    byte_compile()
    summary: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="hallq-footprint-") as tmp:
        work = Path(tmp)
        (work / "broker").mkdir()
        broker = Mosquitto(work / "broker", persistence=False)
        broker.start()
        watch = PresenceWatch(broker.port)
        try:
            for role, agent in AGENTS.items():
                sim_dir = work / "sim" / agent
                sims = start_sims(agent, sim_dir)
                try:
                    results = [
                        run_agent(
                            agent,
                            sim_dir,
                            work / f"state-{agent}-{i}",
                            broker.url,
                            watch,
                            args.idle,
                            entry=args.entry,
                        )
                        for i in range(args.runs)
                    ]
                    traced = [  # one run's import times swing by a third on a VM
                        run_agent(
                            agent,
                            sim_dir,
                            work / f"state-{agent}-it{i}",
                            broker.url,
                            watch,
                            0.2,
                            importtime=True,
                            entry=args.entry,
                        )[2]
                        for i in range(args.runs)
                    ]
                finally:
                    sims.terminate()
                    sims.wait(10)
                online = [r[0] for r in results]
                rss = [r[1]["rss"] for r in results]
                pss = statistics.median(r[1]["pss"] for r in results)
                uss = statistics.median(r[1]["uss"] for r in results)
                totals = sorted((import_total_ms(t), t) for t in traced)
                total, imports = totals[len(totals) // 2]  # the median run's
                heads = top_imports(imports, args.top)
                runs = ", ".join(f"{x:.2f}" for x in online)
                print(
                    f"{role} agent {agent}: start to online median "
                    f"{statistics.median(online):.2f} s (runs {runs}), "
                    f"idle RSS median {statistics.median(rss):.1f} MB "
                    f"(PSS {pss:.1f}, USS {uss:.1f})"
                )
                print(
                    f"  imports median {total:.0f} ms (runs "
                    + ", ".join(f"{ms:.0f}" for ms, _ in totals)
                    + "); top (self ms by package): "
                    + ", ".join(f"{name} {ms:.0f}" for name, ms in heads)
                )
                summary[role] = {
                    "agent": agent,
                    "online_s": statistics.median(online),
                    "rss_mb": statistics.median(rss),
                    "pss_mb": round(pss, 1),
                    "uss_mb": round(uss, 1),
                    "imports_total_ms": round(total, 1),
                    "imports_ms": dict(heads),
                }
        finally:
            watch.close()
            broker.stop()
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
