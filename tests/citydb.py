"""PostgreSQL for the city tests: a database of its own per test on the machine's server,
and a private cluster for the tests that restart or stop the server.

Where psycopg or the server is missing the tests skip, saying why; under CI they fail.
The private cluster (initdb in a temporary folder, on a free port, run as ``postgres``)
exists so that restarting "the" PostgreSQL does not pull the server from under anyone
else's tests on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from hallqctl.mosquitto import free_port

from .ci import missing

ADMIN_DSN = os.environ.get(
    "HALLQ_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_BIN = Path("/usr/lib/postgresql")


def _missing(reason: str) -> NoReturn:
    missing(f"{reason} (the city tests run against a real PostgreSQL)")


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[city]')")
    return psycopg


def dsn_with(dsn: str, **changes: Any) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(dsn), **changes})


def create_database(admin_dsn: str) -> str:
    """A new, migrated database ``hallq_test_<random>``; returns its DSN."""
    psycopg = psycopg_module()
    from city.migrate import migrate

    name = f"hallq_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _missing(f"no PostgreSQL at {admin_dsn}: {exc}")
    dsn = dsn_with(admin_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn


def drop_database(admin_dsn: str, dsn: str) -> None:
    psycopg = psycopg_module()
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def city_dsn() -> Iterator[str]:
    dsn = create_database(ADMIN_DSN)
    try:
        yield dsn
    finally:
        drop_database(ADMIN_DSN, dsn)


class PrivateCluster:
    """A throwaway PostgreSQL server: initdb, start, stop, restart (fast or immediate)."""

    def __init__(self) -> None:
        versions = sorted(PG_BIN.glob("*/bin/initdb"))
        if not versions:
            _missing("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = versions[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hallq-pg-"))
        self.data = self.dir / "data"
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            if shutil.which("runuser") is None:
                _missing("running as root without runuser to start PostgreSQL as postgres")
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.admin_dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.as_postgres, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {done.stdout}{done.stderr}")

    def _ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-w",
            "-t",
            "30",
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            *extra,
        )

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._ctl("restart", "-m", mode)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    psycopg_module()
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
