"""Key on the pad to light: through the real agents, on pty simulators that model the wire.

A private Mosquitto, a real coordinator, a window agent whose one RS-485 line carries 5
call pads, 5 rating pads and 5 window strips (15 devices), and a board agent driving a
256x32 zone board over its own line. Each run presses CALL on a pad and times, from the
press:

- key -> command on MQTT: the window agent's CALL arriving at a subscriber;
- key -> window strip frame: that window's strip controller showing a new image;
- key -> zone board frame: the zone board's controller showing a new image.

It does this at 9600 and 115200 baud, each with the LED_DELTA path and with the old
whole-frame path (simulated controllers with firmware that refuses LED_DELTA, so the
driver sends whole images) in the same run, each configuration in a fresh process. Between
calls the pad FINISHes and the bench waits for the LED lines to go quiet, so the next image
counted is the call's. Everything (broker aside) shares one event loop, as on no real Pi:
"loop lag" (how late a 5 ms sleep wakes) shows how much of a tail is the machine's load.

Usage: python bench/e2e_light.py [--calls 40] [--slow-calls 15] [--bauds 9600,115200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from coordinator.service import Coordinator
from edge.agent import run_agent
from edge.hall_devices import serial_devices
from firmware_bridge.frame import Command
from firmware_bridge.sim import BusSimulator, SimCallPad, SimLedController
from firmware_bridge.sim.hall import SimulatedHall, simulate_devices
from hallq.aio import cancel_and_wait
from hallq.bus import Session
from hallq.config import HallConfig, parse_config
from hallq.messages import IssueRequest
from hallq.topics import HallTopics
from hallqctl.mosquitto import Mosquitto

WINDOWS = 5

HALL = """
[hall]
id = "bench-hall"
name = "测试办税服务厅"
timezone = "Asia/Shanghai"
reset_time = "23:59"
open_hours = [["00:00", "23:59"]]

[coordinator]
board_calls = 5
call_hold_s = 0  # the bench FINISHes as soon as the call is on the LEDs

[[zones]]
id = "hall-1"
name = "第一办税厅"
site = "main"

[[services]]
code = "tax-filing"
name = "申报纳税"
prefix = "A"

{windows}

[[agents]]
id = "pi-w1"
role = "window"
{window_devices}

[[agents]]
id = "pi-d1"
role = "dispenser"

[[agents.devices]]
id = "keys-1"
kind = "keypad"
services = ["tax-filing"]
serial = {{ port = "/dev/ttyUSB0", address = 1 }}

[[agents]]
id = "pi-b1"
role = "board"

[[agents.devices]]
id = "zone-board"
kind = "led_serial"
serial = {{ port = "/dev/ttyUSB1", address = 1, baud = {baud} }}
led = {{ width = 256, height = 32 }}

[broker]
url = "{broker}"
keepalive = 5

[runtime]
state_dir = "{state}"
"""


def hall_text(baud: int, broker: str, state: Path) -> str:
    windows = "\n".join(
        f'[[windows]]\nnumber = {w}\nzone = "hall-1"\nall_services = true\n'
        for w in range(1, WINDOWS + 1)
    )
    devices = []
    for w in range(1, WINDOWS + 1):
        line = f'port = "/dev/ttyUSB0", baud = {baud}'
        devices.append(
            f'[[agents.devices]]\nid = "pad-{w}"\nkind = "call_pad"\nwindow = {w}\n'
            f"serial = {{ {line}, address = {w} }}\n"
            f'[[agents.devices]]\nid = "rate-{w}"\nkind = "rating_pad"\nwindow = {w}\n'
            f"serial = {{ {line}, address = {10 + w} }}\n"
            f'[[agents.devices]]\nid = "strip-{w}"\nkind = "led_serial"\nwindow = {w}\n'
            f"serial = {{ {line}, address = {20 + w} }}\nled = {{ width = 128, height = 16 }}\n"
        )
    return HALL.format(
        windows=windows, window_devices="\n".join(devices), baud=baud, broker=broker, state=state
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


class CommandWatch:
    """A bare paho subscriber stamping the window agent's commands as they reach the broker's
    other side (monotonic clock, the same as the event loop's)."""

    def __init__(self, port: int, topic: str) -> None:
        self.stamps: list[float] = []
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if b'"call"' in msg.payload:
            with self._lock:
                self.stamps.append(time.monotonic())

    def first_after(self, t0: float) -> float | None:
        with self._lock:
            return next((t for t in self.stamps if t >= t0), None)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def led_traffic(ctrl: SimLedController) -> int:
    return ctrl.received[Command.LED_FRAME] + ctrl.received[Command.LED_DELTA]


async def frame_after(
    bus: BusSimulator,
    ctrl: SimLedController,
    count: int,
    timeout: float,  # noqa: ASYNC109  bench helper: each measurement states its bound
) -> float:
    await bus.wait_for(lambda: len(ctrl.frames) > count, timeout=timeout)
    return time.monotonic()


async def acked(bus: BusSimulator, pad: SimCallPad, seq: int, timeout: float) -> float:  # noqa: ASYNC109  bench helper: each measurement states its bound
    """When the agent's link acknowledged the key's event: the key has reached the agent."""
    await bus.wait_for(lambda: seq in pad.acked, timeout=timeout)
    return time.monotonic()


async def quiet(ctrls: list[SimLedController], window: float, timeout: float = 60) -> None:  # noqa: ASYNC109  bench helper: each measurement states its bound
    """Until no LED controller has heard a frame for ``window`` seconds."""
    async with asyncio.timeout(timeout):
        last = [led_traffic(c) for c in ctrls]
        since = time.monotonic()
        while time.monotonic() - since < window:
            await asyncio.sleep(0.02)
            now = [led_traffic(c) for c in ctrls]
            if now != last:
                last, since = now, time.monotonic()


async def loop_lag(samples: list[float], period: float = 0.005) -> None:
    """How late a 5 ms sleep wakes: the machine's load, which every figure here includes."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(period)
        samples.append(time.monotonic() - start - period)


async def start_agent(cfg: HallConfig, agent_id: str, sim_dir: Path) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(
        run_agent(cfg, agent_id, sim_dir=sim_dir, simulate_all=True, ready=ready)
    )
    waiter = asyncio.ensure_future(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    if not ready.is_set():
        raise RuntimeError(f"agent {agent_id} did not come up")
    return task


async def one_run(
    broker: Mosquitto, baud: int, deltas: bool, calls: int, work: Path
) -> dict[str, Any]:
    cfg = parse_config(hall_text(baud, broker.url, work / "state"), "bench-hall.toml")
    sims: dict[str, SimulatedHall] = {}
    for agent_id in ("pi-w1", "pi-b1"):
        sims[agent_id] = simulate_devices(
            serial_devices(cfg.agent(agent_id).devices), work / f"sim-{agent_id}"
        )
    devices = {**sims["pi-w1"].devices, **sims["pi-b1"].devices}

    def ctrl(device_id: str) -> SimLedController:
        bus, address = devices[device_id]
        return bus.device(address, SimLedController)

    leds = [ctrl(f"strip-{w}") for w in range(1, WINDOWS + 1)] + [ctrl("zone-board")]
    for each in leds:
        each.deltas = deltas
    coordinator = Coordinator(cfg, log_path=work / "log.sqlite", dispatch="pure")
    watch = CommandWatch(broker.port, HallTopics(cfg.hall.id).cmd("window", "pi-w1"))
    tasks: list[asyncio.Task[None]] = []
    key_ack: list[float] = []
    key_cmd: list[float] = []
    key_strip: list[float] = []
    key_board: list[float] = []
    settle = 0.4 if baud >= 57600 else 2.5
    lag: list[float] = []
    try:
        async with coordinator.make_session() as session, sims["pi-w1"], sims["pi-b1"]:
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(loop_lag(lag)))
            tasks.append(asyncio.create_task(coordinator.run(session, ready)))
            await asyncio.wait_for(ready.wait(), 30)
            tasks.append(await start_agent(cfg, "pi-w1", work / "sim-pi-w1"))
            tasks.append(await start_agent(cfg, "pi-b1", work / "sim-pi-b1"))
            async with Session(
                cfg.broker,
                hall=cfg.hall.id,
                role="dispenser",
                client_id="pi-d1",
                state_dir=work / "dispenser",
            ) as dispenser:
                await dispenser.wait_connected(10)
                for _ in range(calls):
                    reply = await dispenser.request(
                        dispenser.topics.req("pi-d1"),
                        IssueRequest(kind="issue", service="tax-filing"),
                        timeout=10,
                    )
                    assert reply.ok, reply
            board_bus, _ = devices["zone-board"]
            board = ctrl("zone-board")
            await board_bus.wait_for(lambda: len(board.frames) > 0, timeout=60)
            for n in range(calls):
                window = n % WINDOWS + 1
                pad_bus, pad = devices[f"pad-{window}"]
                strip_bus, _ = devices[f"strip-{window}"]
                strip = ctrl(f"strip-{window}")
                await quiet(leds, settle)
                strip_count, board_count = len(strip.frames), len(board.frames)
                t0 = time.monotonic()
                seq = pad_bus.press(pad, "CALL")
                t_ack, t_strip, t_board = await asyncio.gather(
                    acked(pad_bus, pad_bus.device(pad, SimCallPad), seq, 30),
                    frame_after(strip_bus, strip, strip_count, 30),
                    frame_after(board_bus, board, board_count, 30),
                )
                key_ack.append(t_ack - t0)
                t_cmd = watch.first_after(t0)
                if t_cmd is not None:
                    key_cmd.append(t_cmd - t0)
                key_strip.append(t_strip - t0)
                key_board.append(t_board - t0)
                pad_bus.press(pad, "FINISH")
                print(
                    f"  link {key_ack[-1] * 1000 if key_ack else float('nan'):.0f} ms",
                    end="",
                    file=sys.stderr,
                )
                print(
                    f"  {baud} {'delta' if deltas else 'whole'} call {n + 1}/{calls}: "
                    f"cmd {key_cmd[-1] * 1000 if key_cmd else float('nan'):.0f} ms, "
                    f"strip {key_strip[-1] * 1000:.0f} ms, board {key_board[-1] * 1000:.0f} ms",
                    file=sys.stderr,
                )
            for task in reversed(tasks):  # agents down before their simulated devices go
                await cancel_and_wait(task)
    finally:
        for task in reversed(tasks):
            await cancel_and_wait(task)
        coordinator.close()
        watch.close()
    return {
        "key_to_link": percentiles(key_ack),
        "key_to_command": percentiles(key_cmd),
        "key_to_strip": percentiles(key_strip),
        "key_to_board": percentiles(key_board),
        "loop_lag": percentiles(lag),
        "led_frames": sum(c.received[Command.LED_FRAME] for c in leds),
        "led_deltas": sum(c.received[Command.LED_DELTA] for c in leds),
    }


def run_one(name: str, calls: int) -> dict[str, Any]:
    """One configuration in this process (the parent runs each in a fresh one, so no port,
    descriptor or loop of one run can touch the next)."""
    baud, path = name.split("_")
    with tempfile.TemporaryDirectory(prefix="hallq-e2e-light-") as tmp:
        (Path(tmp) / "broker").mkdir()
        broker = Mosquitto(Path(tmp) / "broker", persistence=False, nodelay=True)
        broker.start()
        try:
            return asyncio.run(one_run(broker, int(baud), path == "delta", calls, Path(tmp)))
        finally:
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="calls at 57600 Bd and faster")
    parser.add_argument("--slow-calls", type=int, default=15, help="calls below 57600 Bd")
    parser.add_argument("--bauds", default="9600,115200")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.calls)))
        return
    bauds = [int(b) for b in args.bauds.split(",")]
    results: dict[str, Any] = {}
    for baud in bauds:
        calls = args.calls if baud >= 57600 else args.slow_calls
        for path in ("delta", "whole"):
            name = f"{baud}_{path}"
            print(f"{name}: {calls} calls...", file=sys.stderr)
            out = subprocess.run(
                [sys.executable, __file__, "--one", name, "--calls", str(calls)],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            ).stdout
            results[name] = json.loads(out.strip().splitlines()[-1])

    def row(name: str) -> str:
        r = results[name]
        cells = [
            f"{r[k]['p50_ms']:>6.0f} / {r[k]['p99_ms']:<6.0f}"
            for k in ("key_to_link", "key_to_command", "key_to_strip", "key_to_board")
        ]
        frames = f"{r['led_frames']} / {r['led_deltas']}"
        lag = f"{r['loop_lag']['p50_ms']:.1f} / {r['loop_lag']['p99_ms']:.0f}"
        return f"| {name} | " + " | ".join(cells) + f" | {frames} | {lag} |"

    print(
        "| run | key->link p50/p99 ms | key->MQTT p50/p99 ms | key->strip p50/p99 ms | "
        "key->board p50/p99 ms | LED_FRAME / LED_DELTA frames | loop lag p50/p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in list(results):
        print(row(name))
    for baud in bauds:
        whole, delta = results[f"{baud}_whole"], results[f"{baud}_delta"]
        ratio = whole["key_to_board"]["p50_ms"] / max(delta["key_to_board"]["p50_ms"], 0.1)
        results[f"{baud}_board_whole_over_delta_p50"] = round(ratio, 2)
        print(f"{baud} Bd: key->board p50 whole / delta = {ratio:.1f}x")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
