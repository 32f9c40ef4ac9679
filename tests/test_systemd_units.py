"""The shipped unit files load cleanly in systemd and stay hardened; the installer parses.

``systemd-analyze verify`` refuses a unit whose ExecStart binary does not exist, and
/opt/hallq/venv/bin/hallq exists only on an installed Pi. So each unit is copied into a
temp dir with ExecStart's binary rewritten to an executable stub there; nothing else in
the unit changes. Unknown keys are only warned about (exit code 0), so any output naming
the unit fails the test too.

systemd-analyze comes from Debian's ``systemd`` package; in CI (``$CI`` set) its absence
is a failure, elsewhere a skip. shellcheck (Debian ``shellcheck``) is optional everywhere.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hallqctl.mosquitto import find_mosquitto, free_port

from .ci import missing

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
INSTALLED_BINARY = "/opt/hallq/venv/bin/hallq"
# Exposure scores measured with systemd 252 (Debian 12), recorded in systemd/README.md;
# the bounds leave a little room for other systemd versions weighing checks differently.
SCORE_BOUNDS = {
    "hallq-coordinator.service": 2.0,
    "hallq-agent@.service": 2.5,
    "hallq-ship.service": 2.0,
    "hallq-bridge.service": 2.0,
    "hallq-broker-watch.service": 2.0,
}


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not installed (Debian package: {package})"
    missing(message)


@pytest.fixture
def analyze() -> str:
    return _tool("systemd-analyze", "systemd")


def _test_copy(unit: str, tmp_path: Path) -> Path:
    stub = tmp_path / "hallq-stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = (UNITS / unit).read_text()
    assert INSTALLED_BINARY in text
    copy = tmp_path / unit
    copy.write_text(text.replace(INSTALLED_BINARY, str(stub)))
    return copy


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("unit", sorted(SCORE_BOUNDS))
def test_unit_passes_systemd_analyze_verify(analyze: str, unit: str, tmp_path: Path) -> None:
    copy = _test_copy(unit, tmp_path)
    result = _run(analyze, "verify", str(copy), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    stem = unit.split("@")[0]
    assert not [line for line in output.splitlines() if stem in line], output


def test_verify_would_catch_a_typo(analyze: str, tmp_path: Path) -> None:
    """Guards the test above: a misspelt key shows up in verify's output."""
    copy = _test_copy("hallq-coordinator.service", tmp_path)
    copy.write_text(copy.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = _run(analyze, "verify", str(copy), cwd=tmp_path)
    assert "Unknown key" in result.stdout + result.stderr


@pytest.mark.parametrize(("unit", "bound"), sorted(SCORE_BOUNDS.items()))
def test_exposure_score_stays_low(analyze: str, unit: str, bound: float, tmp_path: Path) -> None:
    copy = _test_copy(unit, tmp_path)
    result = _run(analyze, "security", "--offline=yes", str(copy), cwd=tmp_path)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= bound, result.stdout


@pytest.mark.parametrize("unit", sorted(SCORE_BOUNDS))
def test_units_have_what_the_field_relies_on(unit: str) -> None:
    text = (UNITS / unit).read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "User=hallq",
        "StateDirectory=hallq",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line
    assert re.search(r"^WatchdogSec=\d+s$", text, re.MULTILINE)
    assert re.search(r"^StartLimitIntervalSec=\d+$", text, re.MULTILINE)
    assert re.search(r"^StartLimitBurst=\d+$", text, re.MULTILINE)


def test_agent_unit_opens_only_its_hardware() -> None:
    text = (UNITS / "hallq-agent@.service").read_text()
    assert "--device %i" in text
    assert "DevicePolicy=closed" in text
    allowed = set(re.findall(r"^DeviceAllow=(\S+) rw$", text, re.MULTILINE))
    assert {"char-ttyUSB", "char-ttyAMA", "char-gpiochip", "char-spi"} <= allowed
    groups = re.search(r"^SupplementaryGroups=(.+)$", text, re.MULTILINE)
    assert groups
    assert {"dialout", "gpio", "spi"} <= set(groups.group(1).split())


def test_readme_records_the_scores() -> None:
    readme = (UNITS / "README.md").read_text()
    for unit in SCORE_BOUNDS:
        assert re.search(rf"`{re.escape(unit)}`\s*\|\s*\d+\.\d+", readme), unit


# --- the hall broker's config, run by a real Mosquitto -----------------------------------


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)


def _connect_rc(
    port: int, username: str | None, password: str | None, ca: Path | None = None
) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe")
    if username is not None:
        client.username_pw_set(username, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    codes: list[int] = []
    client.on_connect = lambda c, u, f, rc, p: codes.append(rc.value)
    client.connect("127.0.0.1", port, keepalive=5)
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    assert codes, "no CONNACK"
    return codes[0]


@pytest.mark.broker
def test_hall_broker_config_loads_under_debians_main_config(tmp_path: Path) -> None:
    """`hallq provision`'s conf.d file next to Debian's stock mosquitto.conf: no duplicate
    keys, TLS on, anonymous and wrong passwords refused, the coordinator let in."""
    from hallq.config import load_config
    from hallqctl.provision import provision

    binary = find_mosquitto()
    if binary is None:
        missing("mosquitto (Debian package: mosquitto)")
    port = free_port()
    out = tmp_path / "provision"
    provision(load_config(ROOT / "examples" / "liwan.toml"), out, port=port, bind="127.0.0.1")
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "hallq.conf").write_text((out / "broker" / "mosquitto.conf").read_text())
    main = tmp_path / "mosquitto.conf"
    main.write_text(  # Debian 12's stock file, paths moved into tmp
        f"persistence true\npersistence_location {tmp_path}/\n"
        f"log_dest file {tmp_path}/mosquitto.log\ninclude_dir {confd}\nuser root\n"
    )
    log = tmp_path / "mosquitto.log"
    log.touch()
    proc = subprocess.Popen([binary, "-c", str(main)], stderr=subprocess.DEVNULL)
    secret = (out / "devices" / "coordinator" / "password").read_text().strip()
    ca = out / "broker" / "ca.crt"
    try:
        _wait_listening(port, proc, log)
        assert _connect_rc(port, "coordinator", secret, ca) == 0
        assert _connect_rc(port, None, None, ca) != 0  # anonymous refused
        assert _connect_rc(port, "coordinator", "wrong", ca) != 0
        with pytest.raises((OSError, AssertionError)):  # TLS only: no CONNACK in the clear
            _connect_rc(port, "coordinator", secret, None)
        assert "1883" not in log.read_text(), "a default listener was opened"
    finally:
        proc.terminate()
        proc.wait(10)


# --- the installer ------------------------------------------------------------------------


def test_install_script_parses() -> None:
    script = ROOT / "deploy" / "install-pi.sh"
    result = subprocess.run(
        ["bash", "-n", str(script)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "set -euo pipefail" in text


def test_the_installer_installs_every_unit_the_project_ships() -> None:
    """A unit in systemd/ that the installer leaves out exists only in the docs (the
    bridge and ship units were missed once)."""
    text = (ROOT / "deploy" / "install-pi.sh").read_text()
    units = sorted(p.name for p in (ROOT / "systemd").glob("*.service"))
    assert units
    missing = [u for u in units if f'"$HERE/systemd/{u}"' not in text]
    assert not missing


def test_install_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (Debian package: shellcheck)")
    script = ROOT / "deploy" / "install-pi.sh"
    result = subprocess.run([shellcheck, str(script)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
