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
        self._port = port if port is not None else free_port()
        self._may_move = port is None and config is None
        self.config = config
        self.extra = extra
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"

    @property
    def port(self) -> int:
        self._may_move = False  # whoever asks may hand it to a client before start()
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self._port} 127.0.0.1",
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
        """Start and wait until it listens.

        A port picked by ``free_port()`` can be taken by another process before the broker
        binds it (parallel tests, the demo beside a test run). A broker of our own config
        then exits with "Address already in use" and is started again on another port, the
        first time only, and only if nobody has asked for the port or URL yet: clients
        given them must find the broker there. Our own broker counts as listening only once
        its log says it is running, so a connection accepted by somebody else's broker on
        that port is never mistaken for ours.
        """
        assert self.proc is None, "already running"
        for attempt in range(5):
            if self._start_once(timeout, may_move=self._may_move and attempt < 4):
                self._may_move = False
                return
            self._port = free_port()

    def _start_once(self, timeout: float, may_move: bool) -> bool:
        conf = self.config if self.config is not None else self._write_config()
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            # its own process group: a terminal's Ctrl-C is for us, who stop it last (it
            # went first, and every client of the demo logged losing it)
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(conf)], stdout=log, stderr=log, process_group=0
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                said = self._log_since(mark)
                self.proc = None
                if may_move and "Address already in use" in said:
                    return False
                raise RuntimeError(f"mosquitto exited: {said[-2000:]}")
            if self._listening(mark):
                return True
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self._port} in {timeout}s")
            time.sleep(0.02)

    def _log_since(self, mark: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace")

    def _listening(self, mark: int) -> bool:
        if self.config is None:  # our config logs to stderr, into our log
            return " running" in self._log_since(mark)
        try:
            with socket.create_connection(("127.0.0.1", self._port), timeout=0.5):
                return True
        except OSError:
            return False

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
