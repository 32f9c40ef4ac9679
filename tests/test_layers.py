"""The packages' layers, read from the source: a forbidden import fails here, not in review.

The plan (ARCHITECTURE.md, README's map): ``hallq`` is the wire contract and imports no
component; drivers and renderers (``firmware_bridge``, ``displays``) take plain values and
never read the hall file or touch the bus; ``edge`` and ``coordinator`` meet only over MQTT;
``hallqctl`` (the operator's command line) wires everything and nothing imports it.
Every import counts, including those inside functions and under ``TYPE_CHECKING``.

A Pi runs one role, so the last test asks a running agent (``hallq agent``, on simulated
devices and a real broker) what it has imported once online: never the other role's worker
and drivers, nor what it has no use for yet (each module costs resident memory, issue 13).
"""

from __future__ import annotations

import ast
import asyncio
import os
import sys
from pathlib import Path

import pytest

from edge.hall_devices import serial_devices
from firmware_bridge.sim.hall import simulate_devices
from hallq.config import load_config
from hallq.examples import example_hall

from .conftest import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hallq", "hallqctl", "coordinator", "edge", "firmware_bridge", "displays", "city")
COMPONENTS = ("hallqctl", "coordinator", "edge", "firmware_bridge", "displays", "city")

# package -> module prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "hallq": COMPONENTS,
    "coordinator": ("hallqctl", "edge", "firmware_bridge", "city"),
    "edge": ("hallqctl", "coordinator"),
    "firmware_bridge": (
        "hallqctl",
        "coordinator",
        "edge",
        "displays",
        "hallq.bus",
        "hallq.session_store",
    ),
    "displays": ("hallqctl", "coordinator", "edge", "hallq.bus", "hallq.session_store"),
    # the city level reads a hall's event log and the contract; the hall never imports it
    "city": ("hallqctl", "edge", "firmware_bridge", "displays", "hallq.bus"),
}
# Drivers and renderers take plain values: the hall file is the agent's to read.
HALL_FILE = "hallq.config"
# Files allowed to read the hall file anyway; this set stays empty (issue 17 emptied it).
HALL_FILE_READERS_PENDING: set[str] = set()
# (file, prefix) allowed past its package's rule, with the reason. The city bridge is a
# client of the hall broker like any device (its own process, `hallq bridge`), so it takes
# its hall-side client from hallq.bus's one factory (credentials, TLS, socket closing).
ALLOWED = {("city/bridge.py", "hallq.bus")}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(package: str) -> list[str]:
    banned = FORBIDDEN.get(package, ())
    if package in ("firmware_bridge", "displays"):
        banned = (*banned, HALL_FILE)
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for lineno, module in imports_of(path):
            for prefix in banned:
                if (
                    under(module, prefix)
                    and not (prefix == HALL_FILE and rel in HALL_FILE_READERS_PENDING)
                    and (rel, prefix) not in ALLOWED
                ):
                    out.append(f"{rel}:{lineno} imports {prefix}")
    return sorted(set(out))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    assert violations(package) == []


def test_the_rule_catches_an_import_hidden_in_a_function(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from coordinator.engine import Engine\n    return Engine\n")
    assert (2, "coordinator.engine") in imports_of(source)


def test_every_python_file_lives_in_a_known_package() -> None:
    stray = [p.name for p in ROOT.glob("*.py") if p.name != "setup.py"]
    assert stray == []
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), package


# what an agent of each role must not have imported once online and idle
NOT_IN_AGENT = {
    "pi-w01": (  # a window Pi: pads, rating pads, serial strips
        "edge.dispenser",
        "edge.leases",
        "firmware_bridge.devices.escpos",
        "firmware_bridge.devices.id_reader",
        "firmware_bridge.devices.keypad",
        "firmware_bridge.devices.printer",
        "firmware_bridge.devices.printer_status",
        "firmware_bridge.devices.scanner",
        "hallq.id_number",
        "hallq.payloads.window",  # its commands: created at the first key press
        "PIL",
        "encodings.idna",
        "unicodedata",
    ),
    "pi-d01": (  # a dispenser Pi: keypad, scanner, ID reader, printer
        "edge.window",
        "edge.panels",
        "displays",
        "firmware_bridge.devices.call_pad",
        "firmware_bridge.devices.rating_pad",
        "firmware_bridge.devices.led_controller",
        "hallq.payloads.dispenser",  # its requests: created at the first key press
        "encodings.idna",
        "unicodedata",
    ),
}

_AGENT_ONLINE = """
import asyncio, sys, hallqctl.launch as launch
from edge.agent import run_agent
async def online(cfg, agent_id, sim_dir):
    ready = asyncio.Event()
    task = asyncio.create_task(
        run_agent(cfg, agent_id, sim_dir=sim_dir, simulate_all=True, ready=ready))
    waiting = asyncio.ensure_future(ready.wait())
    await asyncio.wait({task, waiting}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    # once online it builds the validators of what it receives: that too (if not done)
    building = [t for t in asyncio.all_tasks() if t.get_name() == 'wire models']
    await asyncio.wait_for(asyncio.gather(*building), 20)
    print(ready.is_set(), sorted(m for m in sys.modules if m.split('.')[0] in (
        'edge', 'firmware_bridge', 'displays', 'hallq', 'PIL', 'encodings', 'unicodedata')))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
launch.run_agent_process = lambda cfg, a, d, s: asyncio.run(online(cfg, a, d))
sys.argv = ['hallq', 'agent', '--config', sys.argv[1], '--device', sys.argv[2],
            '--sim-dir', sys.argv[3], '--simulate-all']
launch.main()
"""


@pytest.mark.broker
@pytest.mark.parametrize("agent_id", sorted(NOT_IN_AGENT))
async def test_an_idle_agent_imports_nothing_of_the_other_role(
    agent_id: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hall = example_hall()
    sim_dir = tmp_path / "sim"
    devices = serial_devices(load_config(hall).agent(agent_id).devices)
    env = {
        **os.environ,
        "HALLQ_BROKER_URL": mosquitto.url,
        "HALLQ_STATE_DIR": str(tmp_path / "state"),
        "HALLQ_ID_HASH_KEY": "layers-test-key-0001",
    }
    async with simulate_devices(devices, sim_dir):
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", _AGENT_ONLINE, str(hall), agent_id, str(sim_dir)),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    online, _, loaded = out.decode().strip().rpartition("\n")[2].partition(" ")
    assert online == "True", err.decode()[-3000:]
    modules = set(ast.literal_eval(loaded))
    assert {"edge.agent", "firmware_bridge.link"} <= modules  # (it did run)
    assert sorted(m for m in modules for ban in NOT_IN_AGENT[agent_id] if under(m, ban)) == []
