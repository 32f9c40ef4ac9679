from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hallq import __version__
from hallqctl.cli import main

LIWAN = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_acl_is_scoped_to_the_hall_and_its_clients() -> None:
    result = CliRunner().invoke(main, ["acl", "--config", str(LIWAN), "--operator", "ops"])
    assert result.exit_code == 0, result.output
    assert "user pi-w01\ntopic write hallq/v1/liwan/window/pi-w01/cmd\n" in result.output
    assert "user ops\ntopic read hallq/v1/liwan/#" in result.output
    assert "pattern" not in result.output
    assert "/+/%c/" not in result.output


def test_acl_refuses_a_user_name_that_is_not_an_id() -> None:
    result = CliRunner().invoke(main, ["acl", "--config", str(LIWAN), "--operator", "a b"])
    assert result.exit_code == 2
    assert "broker user 'a b'" in result.output


def test_topics_lists_the_hall_topics(tmp_path: Path) -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["topics", "--config", str(LIWAN)])
    assert result.exit_code == 0, result.output
    assert "hallq/v1/liwan/state/window/{window}" in result.output
    assert "WindowCommand" in result.output


def test_a_broken_config_fails_commands_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "hall.toml"
    bad.write_text(LIWAN.read_text(encoding="utf-8").replace("[hall]", "[hal]", 1))
    result = CliRunner().invoke(main, ["topics", "--config", str(bad)])
    assert result.exit_code == 1
    assert str(bad) in result.output
    assert "hal" in result.output


def test_simulate_prints_a_json_report_and_writes_the_chart(tmp_path: Path) -> None:
    import json

    from .halls import small_hall_text

    hall = tmp_path / "hall.toml"
    hall.write_text(small_hall_text())
    chart = tmp_path / "day.png"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--config",
            str(hall),
            "-r",
            "2",
            "--volume",
            "300",
            "--json",
            "--chart",
            str(chart),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert list(report["policies"]) == ["fifo", "hallq", "pool"]
    assert report["replications"] == 2
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_wrong_input_or_output_path_is_one_line_naming_it(tmp_path: Path) -> None:
    """Found by a new user: a directory or an unwritable place for --chart or --png, a
    hall file given as forecast's --log, were tracebacks (``simulate --history`` already
    said it in one line); a mistyped --log quietly forecast from made-up history."""
    runner = CliRunner()
    cases = [
        (["simulate", "-r", "1", "--volume", "300", "--chart", str(tmp_path)], "is a directory"),
        (
            ["simulate", "-r", "1", "--volume", "300", "--chart", "/proc/hallq/c.png"],
            "cannot write /proc/hallq",
        ),
        (["forecast", "--log", str(LIWAN)], "liwan.toml: not a hallq event log"),
        (["forecast", "--log", str(tmp_path / "events.sqlite")], "does not exist"),
        (["forecast", "--png", str(tmp_path)], "is a directory"),
    ]
    for args, said in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert said in result.output, (args, result.output)


# ~10 s with the compiled day loop; a machine without a C compiler runs it pure (~40 s of CPU)
@pytest.mark.timeout(300)
def test_forecast_prints_levels_scores_held_out_months_and_exports(tmp_path: Path) -> None:
    csv, png = tmp_path / "comfort.csv", tmp_path / "comfort.png"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main,
        [
            "forecast",
            "--config",
            str(LIWAN),
            "--start",
            "2026-11-01",
            "--months",
            "6",
            "--evaluate",
            "1",
            "--csv",
            str(csv),
            "--png",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "seasonal-naive" in result.output
    assert "较" in result.output
    assert csv.read_text(encoding="utf-8-sig").splitlines()[0].startswith("date")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sim_devices_serves_an_agents_serial_devices_on_ptys(tmp_path: Path) -> None:
    """``hallq sim-devices`` is how a field engineer simulates one agent of a hall file
    (firmware_bridge itself no longer reads it): the window agent's RS-485 line appears
    as a pty where that agent, run with the same --sim-dir, looks for it. Ctrl-C at its
    prompt ends it (it waited for Enter), and so does SIGTERM, each taking its links away
    (SIGTERM left them pointing at dead ptys)."""
    import os
    import pty
    import signal
    import subprocess
    import sys

    from .halls import small_hall_text

    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(small_hall_text().replace("/dev/ttyUSB0", "sim:rs485"), encoding="utf-8")
    sim_dir = tmp_path / "sim"
    for stop in (signal.SIGINT, signal.SIGTERM):
        terminal, stdin = pty.openpty()  # a person at a prompt
        with subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from hallqctl.cli import main; main()",
                "sim-devices",
                "--config",
                str(hall_file),
                "--device",
                "pi-w1",
                "--sim-dir",
                str(sim_dir),
            ],
            stdin=stdin,
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()  # printed once the simulators serve
                assert line.startswith(f"bus {sim_dir}"), line
                assert "addresses [1, 2, 11]" in line, line
                assert any(p.name.startswith("rs485") for p in sim_dir.iterdir())
                proc.send_signal(stop)
                assert proc.wait(timeout=20) == 0, stop
            finally:
                proc.kill()
                os.close(terminal)
                os.close(stdin)
        assert not any(p.name.startswith("rs485") for p in sim_dir.iterdir()), stop
    board = CliRunner().invoke(
        main,
        ["sim-devices", "--config", str(hall_file), "--device", "pi-b1", "--sim-dir", str(sim_dir)],
    )
    assert board.exit_code == 0, board.output
    assert "pi-b1 has no serial device to simulate (its devices: led_max7219, speaker)" in (
        board.output
    )
    bad = CliRunner().invoke(
        main,
        ["sim-devices", "--config", str(hall_file), "--device", "pi-x", "--sim-dir", str(sim_dir)],
    )
    assert bad.exit_code == 2
    assert "unknown agent 'pi-x'" in bad.output
