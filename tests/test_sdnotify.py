"""The notify protocol against real AF_UNIX datagram sockets, as systemd would hold them."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hallq.logsetup import redact, running_under_systemd, setup_logging
from hallq.sdnotify import Notifier, ready_when, watchdog, watchdog_interval

from .conftest import until


class Receiver:
    """The systemd end: a datagram socket whose messages a thread timestamps on arrival."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        return [text for _, text in self.messages]

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"only {self.messages} arrived"
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


@pytest.fixture
def receiver(short_dir: Path) -> Iterator[tuple[Receiver, str]]:
    address = str(short_dir / "notify")
    rx = Receiver(address)
    try:
        yield rx, address
    finally:
        rx.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.sent == 0
    assert notifier.failures == 0


def test_ready_status_and_stopping_arrive_as_one_datagram_each(
    receiver: tuple[Receiver, str],
) -> None:
    rx, address = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.ready("serving\n3 windows")
    assert notifier.status("broker lost")
    assert notifier.stopping()
    rx.wait_for(3)
    assert rx.texts() == ["READY=1\nSTATUS=serving 3 windows", "STATUS=broker lost", "STOPPING=1"]


def test_abstract_namespace_socket() -> None:
    name = f"hallq-test-{os.getpid()}-{time.monotonic_ns()}"
    rx = Receiver(b"\0" + name.encode())
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        rx.wait_for(1)
        assert rx.texts() == ["READY=1"]
    finally:
        rx.close()


def test_send_failures_are_logged_once_per_kind_and_never_raise(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(short_dir / "nobody-listens"))
    with caplog.at_level(logging.WARNING, logger="hallq.sdnotify"):
        for _ in range(5):
            assert notifier.ping() is False
    assert notifier.failures == 5
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4242"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval_is_half_and_only_for_our_pid(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env, pid=4242) == expected


async def test_watchdog_is_a_no_op_without_a_watchdog(receiver: tuple[Receiver, str]) -> None:
    _, address = receiver
    notifier = Notifier(address)
    await asyncio.wait_for(watchdog(notifier, environ={}), 1)  # returns at once
    assert notifier.sent == 0


async def test_watchdog_pings_stop_while_the_loop_is_blocked_and_resume_after(
    receiver: tuple[Receiver, str],
) -> None:
    """Counted in datagrams sent, not in time: a loaded CI box may ping late, but a blocked
    loop must not ping at all, and a freed one must ping again."""
    rx, address = receiver
    notifier = Notifier(address)
    env = {"WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}  # ping every 50 ms
    task = asyncio.create_task(watchdog(notifier, environ=env))
    await until(lambda: notifier.sent >= 3, timeout=10)
    before = notifier.sent
    time.sleep(0.5)  # noqa: ASYNC251  a hung handler on purpose: the loop cannot run the watchdog
    assert notifier.sent == before
    await until(lambda: notifier.sent >= before + 3, timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(rx.wait_for, notifier.sent)
    assert rx.texts() == ["WATCHDOG=1"] * notifier.sent
    gaps = [b - a for a, b in itertools.pairwise(t for t, _ in rx.messages)]
    assert max(gaps) >= 0.4  # the block shows as one long silence


async def test_ready_when_the_condition_holds_or_after_the_grace(
    receiver: tuple[Receiver, str],
) -> None:
    rx, address = receiver
    notifier = Notifier(address)
    connected = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, connected.set)
    assert await ready_when(notifier, connected.wait(), status="connected", grace=5)
    never = asyncio.Event()
    assert not await ready_when(notifier, never.wait(), status="connected", grace=0.05)
    await asyncio.to_thread(rx.wait_for, 2)
    assert rx.texts() == [
        "READY=1\nSTATUS=connected",
        "READY=1\nSTATUS=started; broker not reachable yet",
    ]


# --- hallq.logsetup: what a unit writes to the journal -----------------------------------
# (kept here with the other systemd-facing tests; the brief lists no test file of its own)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    mqtt_level = logging.getLogger("hallq.mqtt").level
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("hallq.mqtt").setLevel(mqtt_level)


def test_json_lines_under_systemd_with_id_numbers_redacted(root_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging("INFO", environ={"INVOCATION_ID": "abc"}, stream=out)
    log = logging.getLogger("hallq.test")
    log.info("ticket for %s issued", "44010619900101123X")
    log.debug("not shown at INFO")
    try:
        raise ValueError("bad card 440106199001011234")
    except ValueError:
        log.exception("reader failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [entry["level"] for entry in lines] == ["INFO", "ERROR"]
    assert lines[0]["msg"] == "ticket for [id-redacted] issued"
    assert lines[0]["logger"] == "hallq.test"
    assert "440106199001011234" not in out.getvalue()
    assert "[id-redacted]" in lines[1]["exc"]


def test_text_on_a_terminal_and_env_level_wins(root_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging("INFO", environ={"HALLQ_LOG_LEVEL": "debug"}, stream=out)
    setup_logging("INFO", environ={"HALLQ_LOG_LEVEL": "debug"}, stream=out)  # idempotent
    logging.getLogger("hallq.test").debug("card %s", "440106199001011234")
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "DEBUG" in text
    assert "card [id-redacted]" in text
    assert not text.startswith("{")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id 44010619900101123x ok", "id [id-redacted] ok"),
        ("order 1234567890123456789012", "order 1234567890123456789012"),  # longer run
        ("A001 at 2026-01-01", "A001 at 2026-01-01"),
        ("身份证 440106 19900101 123X 张三", "身份证 [id-redacted] 张三"),  # as people write it
        ("id 440106-19900101-1234.", "id [id-redacted]."),
        ("tel 020 12345678 1234", "tel 020 12345678 1234"),
    ],
)
def test_redact_only_masks_id_card_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_systemd_detection() -> None:
    assert running_under_systemd({"JOURNAL_STREAM": "8:123"})
    assert running_under_systemd({"INVOCATION_ID": "x"})
    assert not running_under_systemd({})


def test_priority_prefixes_only_when_stderr_is_the_journal_stream(
    root_logger: logging.Logger, tmp_path: Path
) -> None:
    """journald reads ``<N>`` at the start of a line as its priority (``journalctl -p``);
    systemd says which stream is the journal in ``$JOURNAL_STREAM`` (device:inode)."""
    journal, other = socket.socketpair()
    with journal, other, open(tmp_path / "stderr.log", "w", encoding="utf-8") as not_journal:
        st = os.fstat(journal.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "INVOCATION_ID": "x"}
        stream = journal.makefile("w", encoding="utf-8")
        setup_logging("DEBUG", environ=env, stream=stream)
        log = logging.getLogger("hallq.test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("card %s unreadable", "440106199001011234")
        stream.flush()
        other.settimeout(5)
        received = b""
        while received.count(b"\n") < 4:
            received += other.recv(4096)
        lines = received.decode().splitlines()
        assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
        assert json.loads(lines[3][3:])["msg"] == "card [id-redacted] unreadable"

        setup_logging("DEBUG", environ=env, stream=not_journal)  # stderr sent to a file
        log.warning("w")
        not_journal.flush()
    assert (tmp_path / "stderr.log").read_text(encoding="utf-8").startswith("{")
