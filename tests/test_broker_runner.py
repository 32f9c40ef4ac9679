"""The private Mosquitto every broker test starts: the free port it picked may be taken
before the broker binds it (another xdist worker, the demo), and the test must get its own
broker then, not an error, and never somebody else's listener."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hallq.config import BrokerConfig
from hallqctl import mosquitto as runner
from hallqctl.brokerwatch import probe
from hallqctl.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


@pytest.fixture
def squatter() -> Iterator[socket.socket]:
    """A listener that completes TCP handshakes (its backlog) but never speaks MQTT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


async def test_a_port_taken_before_the_broker_binds_it_moves_the_broker(
    tmp_path: Path, squatter: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = squatter.getsockname()[1]
    real_free_port = runner.free_port
    picks = iter([taken])
    monkeypatch.setattr(runner, "free_port", lambda: next(picks, None) or real_free_port())
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        assert broker.port != taken
        assert broker.url.endswith(f":{broker.port}")
        answer = await probe(BrokerConfig(url=broker.url), 5.0)
        assert answer.answered, answer.reason
    finally:
        broker.kill()


def test_a_port_handed_out_before_the_start_is_kept(
    tmp_path: Path, squatter: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client configured with the URL before the broker starts must find it there."""
    taken = squatter.getsockname()[1]
    monkeypatch.setattr(runner, "free_port", lambda: taken)
    broker = Mosquitto(tmp_path, persistence=False)
    assert broker.url.endswith(f":{taken}")
    with pytest.raises(RuntimeError, match="Address already in use"):
        broker.start()
    assert broker.proc is None


def test_a_restart_keeps_its_port_and_says_why_it_cannot(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path, persistence=False)
    broker.start()
    port = broker.port
    broker.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        with pytest.raises(RuntimeError, match="Address already in use"):
            broker.start()
    assert broker.port == port
    broker.start()
    broker.kill()
