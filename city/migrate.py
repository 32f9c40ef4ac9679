"""The city database's schema, as numbered plain SQL files applied in order.

Plain SQL rather than Alembic: the schema is PostgreSQL-specific (partitions, a PL/pgSQL
function) and there are no ORM models to diff against, so Alembic would only wrap the
same SQL in Python and add SQLAlchemy to the city extra. Each file runs in its own
transaction with its row in ``schema_migrations``; a session-level advisory lock keeps
two migrators (two halls' installers, say) from applying the same file twice, and a
checksum refuses a database whose applied files were edited afterwards.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x68616C6C71  # "hallq"

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The database's schema and the migration files disagree; the message says how."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"{directory}: versions must run 1, 2, 3... without gaps: {versions}")
    return found


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """version -> checksum of what the database has; {} for a new database."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(v): str(c) for v, c in rows}


def _check(done: dict[int, str], files: list[Migration]) -> None:
    by_version = {m.version: m for m in files}
    for version, checksum in sorted(done.items()):
        m = by_version.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {version}, which this hallq does "
                "not know: it was migrated by a newer hallq"
            )
        if m.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{m.name}.sql was changed after it was "
                "applied; add a new migration instead of editing an old one"
            )


def pending(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = migrations(directory)
    done = applied(conn)
    _check(done, files)
    return [m for m in files if m.version not in done]


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration; returns those applied (none: already current).

    ``conn`` must be in autocommit mode: each migration gets its own transaction.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(_TABLE)
        todo = pending(conn, directory)
        for m in todo:
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
        return todo
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def require_current(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> None:
    """Refuse to work on a database whose schema is behind this hallq's."""
    todo = pending(conn, directory)
    if todo:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
        raise MigrationError(
            f"the city database lacks migration(s) {names}: "
            "run `hallq city migrate --dsn ...` first"
        )


def add_hall(
    conn: psycopg.Connection, hall_id: str, role: str, password: str | None = None
) -> bool:
    """Make ``role`` the login of hall ``hall_id``'s shipper: a member of
    ``hallq_shipper`` that may write only that hall's rows and cursor (migration 0003).
    Needs a login that may create roles. Returns False if the role existed (its password
    is then set again, if given)."""
    from psycopg import sql

    from hallq.topics import check_id

    check_id(hall_id, "hall id")
    check_id(role.replace("_", "-"), "role name")  # the same characters, and no quoting
    require_current(conn)
    ident = sql.Identifier(role)
    with conn.transaction():
        exists = conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        conn.execute(sql.SQL("GRANT hallq_shipper TO {}").format(ident))
        if password:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
        conn.execute(
            "INSERT INTO hall_roles (role, hall_id) VALUES (%s, %s) "
            "ON CONFLICT (role) DO UPDATE SET hall_id = excluded.hall_id",
            (role, hall_id),
        )
    return exists is None
