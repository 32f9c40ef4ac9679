"""Shared fixtures: a private Mosquitto per test (hallqctl.mosquitto), sessions, inboxes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hallq.bus import Session
from hallq.config import BrokerConfig
from hallqctl.embedded_broker import embedded_broker
from hallqctl.mosquitto import Mosquitto, free_port

from .ci import missing

__all__ = ["Inbox", "Mosquitto", "free_port"]

@pytest.fixture
def amqtt_url() -> Iterator[str]:
    """The demo's embedded broker (amqtt, MQTT 3.1.1 only) on a free port."""
    with embedded_broker(free_port()) as url:
        yield url


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


@pytest.fixture(params=["pure", "compiled"])
def core_cls(request: pytest.FixtureRequest) -> type[Any]:
    """Both dispatch cores; in CI a missing compiled core fails instead of skipping."""

    from coordinator.dispatch import load_core

    try:
        return load_core(request.param)
    except ImportError as exc:
        missing(f"the compiled dispatch core: {exc}")
