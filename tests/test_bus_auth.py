"""Credentials and TLS from the broker config, against a Mosquitto that demands them."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from city.testcluster import make_certs
from hallq.bus import Session
from hallq.config import BrokerConfig, TlsConfig

from .conftest import Mosquitto, need, until

pytestmark = pytest.mark.broker


def _session(broker: BrokerConfig, tmp_path: Path, client: str) -> Session:
    return Session(
        broker,
        hall="liwan",
        role="window",
        client_id=client,
        state_dir=tmp_path / client,
        backoff_initial=0.05,
        backoff_max=0.3,
    )


async def test_username_and_password_are_used_and_a_wrong_one_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "win-01", "s3cret"], check=True)
    broker = Mosquitto(
        tmp_path, extra=f"password_file {passwd}\nallow_anonymous false", persistence=False
    )
    broker.start()
    try:
        good = BrokerConfig(url=broker.url, username="win-01", password=SecretStr("s3cret"))
        async with _session(good, tmp_path, "win-01") as session:
            await session.wait_connected(10)
        bad = BrokerConfig(url=broker.url, username="win-01", password=SecretStr("wrong"))
        with caplog.at_level(logging.WARNING, "hallq.bus"):
            async with _session(bad, tmp_path, "win-01") as session:
                with pytest.raises(TimeoutError):
                    await session.wait_connected(1.0)
    finally:
        broker.kill()
    refusals = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert refusals
    assert "win-01" in refusals[0]
    assert all("wrong" not in r.getMessage() for r in caplog.records)


async def test_tls_connects_with_the_configured_ca_and_refuses_an_unknown_one(
    tmp_path: Path,
) -> None:
    need("openssl", shutil.which("openssl") is not None, "sudo apt-get install openssl")
    make_certs(tmp_path)
    broker = Mosquitto(
        tmp_path,
        persistence=False,
        extra=f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\n"
        f"keyfile {tmp_path}/server.key",
    )
    broker.start()
    url = f"mqtts://127.0.0.1:{broker.port}"
    try:
        trusted = BrokerConfig(url=url, tls=TlsConfig(ca_file=tmp_path / "ca.crt"))
        assert trusted.use_tls
        async with _session(trusted, tmp_path, "win-tls") as session:
            await session.wait_connected(10)
        untrusted = BrokerConfig(url=url)
        async with _session(untrusted, tmp_path, "win-tls2") as session:
            with pytest.raises(TimeoutError):
                await session.wait_connected(0.5)
            fds = []
            for target in (5, 25):

                def tried(n: int = target) -> bool:
                    return session.attempts >= n

                await until(tried, timeout=20)
                fds.append(len(os.listdir("/proc/self/fd")))
            assert not session.connected
        assert fds[1] - fds[0] < 5, f"20 failed handshakes left {fds[1] - fds[0]} more fds open"
    finally:
        broker.kill()
