"""`hallq agent`, the one command line every Pi runs, starts without the operator CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hallq.examples import example_hall
from hallqctl.launch import agent_line, main


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (
            ["agent", "--config", "h.toml", "--device", "pi-w01"],
            {"config_file": "h.toml", "agent_id": "pi-w01", "simulate_all": False},
        ),
        (
            ["agent", "--device=pi-w01", "--simulate-all", "--config=h.toml", "--sim-dir", "s"],
            {"config_file": "h.toml", "agent_id": "pi-w01", "simulate_all": True, "sim_dir": "s"},
        ),
        (["agent", "--config", "h.toml"], None),  # no device: click says so
        (["agent", "--config", "h.toml", "--device", "pi-w01", "--simulate-all"], None),
        (["agent", "--config", "h.toml", "--device", "pi-w01", "--help"], None),
        (["agent", "--config", "--device", "pi-w01"], None),
        (["agent", "--config", "a", "--config", "b", "--device", "pi-w01"], None),
        (["coordinator", "--config", "h.toml"], None),
        ([], None),
    ],
)
def test_only_a_plain_agent_line_skips_the_cli(
    argv: list[str], wanted: dict[str, object] | None
) -> None:
    assert agent_line(argv) == wanted


def test_the_agent_starts_without_click() -> None:
    hall = str(example_hall())
    code = (
        "import sys, hallqctl.launch as launch\n"
        "launch.run_agent_process = lambda *a: print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('click', 'hallqctl', 'rich')), a[1:])\n"
        f"sys.argv = ['hallq', 'agent', '--config', {hall!r}, '--device', 'pi-w01']\n"
        "launch.main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['hallqctl', 'hallqctl.launch'] ('pi-w01', None, False)"


def test_a_mistake_on_the_agent_line_is_reported_by_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["hallq", "agent", "--config", str(example_hall()), "--device", "pi-nope"]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "--device" in capsys.readouterr().err


def test_the_agent_loads_no_package_metadata_and_no_cli_parsers() -> None:
    """Plugins off, pydantic's plugin loader would import importlib.metadata (and email,
    zipfile, csv) only to find none; the contract's and the hall file's helpers for other
    commands and for mistakes load only when used, and so does paho's urllib.request (~2.5
    MB, for proxies through PySocks). The hall file is still validated."""
    hall = str(example_hall())
    code = (
        "import sys, hallqctl.launch as launch\n"
        "launch.run_agent_process = lambda cfg, *a: print(sorted(m for m in "
        "('importlib.metadata', 'argparse', 'difflib', 'PIL', 'http.client', 'email') "
        "if m in sys.modules), "
        "len(cfg.windows))\n"
        f"sys.argv = ['hallq', 'agent', '--config', {hall!r}, '--device', 'pi-w01']\n"
        "launch.main()\n"
        "from pydantic import BaseModel\n"
        "class M(BaseModel):\n    x: int\n"
        "print(M(x='3').x)\n"
        "import urllib.request\n"  # whoever uses it gets all of it
        "from urllib.request import Request\n"
        "print(urllib.request.getproxies() is not None, Request.__module__, "
        "sys.modules['urllib.request'] is urllib.request)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split("\n")[:3] == ["[] 47", "3", "True urllib.request True"]


def test_the_agent_resolves_its_broker_without_the_unicode_tables() -> None:
    """getaddrinfo encodes a str host with the idna codec, whose module loads stringprep
    and unicodedata's tables (~0.4 MB); an ASCII host needs neither, and every name still
    encodes (or fails) exactly as Python's own idna codec has it."""
    hall = str(example_hall())
    cases = [
        "127.0.0.1",
        "broker.hall-1.example",
        "broker.example.",
        "",
        "a" * 63 + ".example",
        "a" * 64 + ".example",
        "example." + "a" * 64,
        "a..b",
        ".",
        "bücher.example",
        "ПРИМЕР.испытание",
    ]
    code = (
        "import codecs, socket, sys, hallqctl.launch as launch\n"
        "def agent(*a):\n"
        "    socket.getaddrinfo('127.0.0.1', 1883)\n"
        "    'broker.hall-1.example'.encode('idna')\n"
        "    print(sorted(m for m in ('encodings.idna', 'stringprep', 'unicodedata') "
        "if m in sys.modules))\n"
        "launch.run_agent_process = agent\n"
        f"sys.argv = ['hallq', 'agent', '--config', {hall!r}, '--device', 'pi-w01']\n"
        "launch.main()\n"
        "from encodings.idna import Codec\n"
        "def outcome(encode, name):\n"
        "    try:\n"
        "        return encode(name)\n"
        "    except UnicodeError as exc:\n"
        "        return type(exc), str(exc)\n"
        "mine, real = codecs.lookup('idna').encode, Codec().encode\n"
        f"print([outcome(mine, n) == outcome(real, n) for n in {cases!r}])\n"
        "print(b'xn--bcher-kva.example'.decode('idna'), "
        "codecs.getincrementalencoder('idna')().encode('b\\u00fccher.', final=True))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == str([True] * len(cases))
    assert out[2] == "bücher.example b'xn--bcher-kva.'"
