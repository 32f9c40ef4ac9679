"""The packages' layers, read from the source: a forbidden import fails here, not in review.

The plan (ARCHITECTURE.md, README's map): ``hallq`` is the wire contract and imports no
component; drivers and renderers (``firmware_bridge``, ``displays``) take plain values and
never read the hall file or touch the bus; ``edge`` and ``coordinator`` meet only over MQTT;
``hallqctl`` (the operator's command line) wires everything and nothing imports it.
Every import counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
