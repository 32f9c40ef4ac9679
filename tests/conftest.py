"""Shared fixtures: a private Mosquitto per test, on a free loopback port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hallq.bus import Session
from hallq.config import BrokerConfig

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A real broker with its own config, which a test may stop, kill and start again."""

    def __init__(self, workdir: Path, extra: str = "", persistence: bool = True) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra = extra
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type all",
            "user root",
            self.extra,
        ]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        conf = self._write_config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout}s")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Mosquitto(workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


class Inbox:
    """Collects what a route receives; tests wait on a condition instead of sleeping."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Condition()

    async def __call__(self, incoming: Any) -> None:
        async with self._changed:
            self.items.append(incoming)
            self._changed.notify_all()

    @property
    def payloads(self) -> list[Any]:
        return [item.payload for item in self.items]

    async def wait_for(
        self, predicate: Callable[[list[Any]], bool], timeout: float = 10.0
    ) -> list[Any]:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.payloads))
        return self.payloads


@pytest.fixture
def inbox() -> Callable[[], Inbox]:
    return Inbox


@pytest.fixture
def make_session(
    mosquitto: Mosquitto, tmp_path: Path
) -> Callable[..., Session]:
    """Build a Session on the test broker; each client id gets its own state dir by default."""

    def build(role: str, client_id: str, *, protocol: str = "auto", **kwargs: Any) -> Session:
        broker = BrokerConfig(url=kwargs.pop("url", mosquitto.url), protocol=protocol,
                              username=kwargs.pop("username", None), keepalive=5)
        return Session(
            broker, hall="liwan", role=role, client_id=client_id,
            state_dir=kwargs.pop("state_dir", tmp_path / "state" / client_id),
            backoff_initial=0.05, backoff_max=0.5, **kwargs,
        )

    return build
