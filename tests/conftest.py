"""Shared fixtures: a private Mosquitto per test (hallqctl.mosquitto), sessions, inboxes.

Also two rules for the whole suite:

- a test that needs a system package this machine lacks (Mosquitto for every ``broker``
  test) is skipped with the command that installs it, except under CI (``tests/ci.py``),
  where it fails: CI installs everything (``.ci/run``) and must run every test;
- no test hangs: besides pytest-timeout's per-test limit (``timeout`` in pyproject.toml,
  which raises in the test and so cannot end a hang in an event loop's own shutdown), a
  watchdog thread ends the whole run ``HARD_GRACE_S`` later, naming the test and dumping
  every thread's stack.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from hallq.bus import Session
from hallq.config import BrokerConfig
from hallqctl.embedded_broker import embedded_broker
from hallqctl.mosquitto import Mosquitto, find_mosquitto, free_port

from .ci import missing

__all__ = ["Inbox", "Mosquitto", "free_port", "need"]

HARD_GRACE_S = float(os.environ.get("HALLQ_TEST_HARD_GRACE_S", "30"))


def need(what: str, present: bool, install: str) -> None:
    """Skip (fail under CI: tests/ci.py) when ``what`` is missing, saying how to install it."""
    if not present:
        missing(f"{what} is not installed ({install})")


def need_mosquitto() -> None:
    need("mosquitto", find_mosquitto() is not None, "sudo apt-get install mosquitto")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("broker") is not None:
        need_mosquitto()


def _hard_limit(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    limit = marker.args[0] if marker is not None and marker.args else item.config.getini("timeout")
    try:
        seconds = float(limit)
    except (TypeError, ValueError):
        return None
    return seconds + HARD_GRACE_S if seconds > 0 else None


def _end_the_run(config: pytest.Config, nodeid: str, limit: float) -> None:
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:  # give fd 2 back, so this reaches the terminal
        capture.suspend_global_capture(in_=False)
    sys.stderr.write(
        f"\nHARD TIMEOUT: {nodeid} still running after {limit:g} s; "
        "ending the test run (stacks below)\n"
    )
    sys.stderr.flush()
    faulthandler.dump_traceback(all_threads=True)
    os._exit(3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    limit = _hard_limit(item)
    watchdog = None
    if limit is not None:
        watchdog = threading.Timer(limit, _end_the_run, (item.config, item.nodeid, limit))
        watchdog.daemon = True
        watchdog.start()
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.cancel()


@pytest.fixture
def amqtt_url() -> Iterator[str]:
    """The demo's embedded broker (amqtt, MQTT 3.1.1 only) on a free port."""
    with embedded_broker(free_port()) as url:
        yield url


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    need_mosquitto()
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
        self,
        predicate: Callable[[list[Any]], bool],
        timeout: float = 10.0,  # noqa: ASYNC109  each test states its bound at the call
    ) -> list[Any]:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.payloads))
        return self.payloads


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109  each test states its bound
    """Wait for state that has no event of its own (the engine's tickets, a counter, a file
    another process writes), checking every 10 ms; ``timeout`` bounds it, as every wait."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110  the state itself is all there is to watch
            await asyncio.sleep(0.01)


@pytest.fixture
def inbox() -> Callable[[], Inbox]:
    return Inbox


@pytest.fixture
def make_session(mosquitto: Mosquitto, tmp_path: Path) -> Callable[..., Session]:
    """Build a Session on the test broker; each client id gets its own state dir by default."""

    def build(
        role: str,
        client_id: str,
        *,
        protocol: Literal["auto", "5", "3.1.1"] = "auto",
        **kwargs: Any,
    ) -> Session:
        broker = BrokerConfig(
            url=kwargs.pop("url", mosquitto.url),
            protocol=protocol,
            username=kwargs.pop("username", None),
            keepalive=5,
        )
        return Session(
            broker,
            hall="liwan",
            role=role,
            client_id=client_id,
            state_dir=kwargs.pop("state_dir", tmp_path / "state" / client_id),
            backoff_initial=0.05,
            backoff_max=0.5,
            **kwargs,
        )

    return build


@pytest.fixture(params=["pure", "compiled"])
def core_cls(request: pytest.FixtureRequest) -> type[Any]:
    """Both dispatch cores; in CI a missing compiled core fails instead of skipping."""

    from coordinator.dispatch import load_core

    try:
        return load_core(request.param)
    except ImportError as exc:
        missing(f"the compiled dispatch core: {exc}")
