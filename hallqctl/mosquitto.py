"""A private Mosquitto with its own config on a free loopback port.

Tests start one per test so they can stop, kill and restart it; benchmarks and the demo use
the same runner when they need a broker nobody else touches.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def find_mosquitto() -> str | None:
    """The mosquitto binary (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A real broker with its own config, which a test may stop, kill and start again."""

    def __init__(
        self,
        workdir: Path,
        extra: str = "",
        persistence: bool = True,
        nodelay: bool = True,
        *,
        config: Path | None = None,
        port: int | None = None,
    ) -> None:
        """``config`` runs a config written elsewhere (``hallq provision``) as it is, on the
        ``port`` it listens on, instead of the private loopback one."""
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (Debian: apt install mosquitto)")
        self.binary = binary
        self.nodelay = nodelay
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.config = config
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
            f"set_tcp_nodelay {'true' if self.nodelay else 'false'}",
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
        conf = self.config if self.config is not None else self._write_config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not listen on {self.port} in {timeout}s"
                    ) from exc
                time.sleep(0.02)

    def stop(self, timeout: float = 3.0) -> None:
        """Terminate; a broker that has not exited after ``timeout`` s is killed."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
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
