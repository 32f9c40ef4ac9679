"""Logins to the supervisor desk: sessions, CSRF, same-origin checks, login throttling.

A login (user name + password, verified against an argon2id hash off the event loop)
opens a server-side session named by a random token in an HttpOnly, SameSite=Strict
cookie (Secure when served over TLS). Sessions end on logout, after ``session_idle_min``
without a request, after ``session_max_h`` in any case, and when their user is removed or
demoted; they survive a coordinator restart (systemd after a crash, mid-shift), kept beside
the event log as a hash of their token, so the file lets nobody in. Every state-changing
request (any method but GET/HEAD/OPTIONS) from a browser must come from this site's own
pages (``Origin``, else ``Referer``); one made under a session must also carry that
session's CSRF token in ``X-CSRF-Token``, which only the desk's own script can read. Failed
logins lock the user name and the client address for a while, checked before the (costly)
hash is verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from hallq.config import HallConfig, WebConfig

from .users import Directory, User, verify_password

COOKIE = "hallq_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 1000
MAX_TRACKED = 10_000  # throttle keys kept; the oldest are forgotten past this
TOUCH_EVERY_S = 60.0  # a session's last request is written down at most this often

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Session:
    token: str
    user: str
    role: str
    csrf: str
    created: float
    last_seen: float
    client: str

    @property
    def may_act(self) -> bool:
        return self.role == "supervisor"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _csrf_of(token: str) -> str:
    """Derived from the session token, so it need not be stored: only the page the cookie
    was set for can ask for it (``/api/session``)."""
    return hmac.new(token.encode(), b"hallq-csrf", hashlib.sha256).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL, role TEXT NOT NULL,
    created REAL NOT NULL, last_seen REAL NOT NULL, client TEXT NOT NULL
)
"""


class Sessions:
    """Server-side sessions, keyed by a hash of their token. With a ``path`` they are kept
    in a small SQLite file too, so a restarted coordinator knows them; without one (the
    bureau's dashboard) they live in memory only."""

    def __init__(
        self,
        idle_s: float,
        max_s: float,
        clock: Callable[[], float],
        path: Path | None = None,
    ) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self._by_digest: OrderedDict[str, Session] = OrderedDict()
        self._written: dict[str, float] = {}  # digest -> last_seen as the file has it
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._open_store(path)

    def _open_store(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            now = self.clock()
            db.execute(
                "DELETE FROM sessions WHERE last_seen < ? OR created < ?",
                (now - self.idle_s, now - self.max_s),
            )
            rows = db.execute(
                "SELECT digest, user, role, created, last_seen, client FROM sessions"
                " ORDER BY last_seen LIMIT ?",
                (MAX_SESSIONS,),
            ).fetchall()
        except sqlite3.Error as exc:
            # the desk still works, sessions in memory: a restart will log people out
            log.warning("desk sessions are not kept across restarts: %s: %s", path, exc)
            return
        self._db = db
        for digest, user, role, created, last_seen, client in rows:
            # the token itself is known again at the session's next request
            self._by_digest[digest] = Session("", user, role, "", created, last_seen, client)
            self._written[digest] = last_seen

    def _store(self, sql: str, args: tuple[object, ...]) -> None:
        if self._db is None:
            return
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:  # a full disk must not end the request
            log.warning("desk sessions: could not write: %s", exc)

    def open(self, user: User, client: str) -> Session:
        now = self.clock()
        token = secrets.token_urlsafe(32)
        session = Session(token, user.name, user.role, _csrf_of(token), now, now, client)
        digest = _digest(token)
        self._by_digest[digest] = session
        self._written[digest] = now
        self._store(
            "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
            (digest, user.name, user.role, now, now, client),
        )
        while len(self._by_digest) > MAX_SESSIONS:
            self._forget(next(iter(self._by_digest)))
        return session

    def _forget(self, digest: str) -> None:
        self._by_digest.pop(digest, None)
        self._written.pop(digest, None)
        self._store("DELETE FROM sessions WHERE digest = ?", (digest,))

    def get(self, token: str | None, directory: Directory) -> Session | None:
        """The live session named by ``token``; touching it extends its idle time."""
        if not token:
            return None
        digest = _digest(token)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        now = self.clock()
        user = directory.get(session.user)
        if (
            now - session.last_seen > self.idle_s
            or now - session.created > self.max_s
            or user is None
            or user.role != session.role
        ):
            self._forget(digest)
            return None
        if not session.token:  # known from the file: the cookie names it again
            session.token, session.csrf = token, _csrf_of(token)
        session.last_seen = now
        if now - self._written.get(digest, 0.0) >= TOUCH_EVERY_S:
            self._written[digest] = now
            self._store("UPDATE sessions SET last_seen = ? WHERE digest = ?", (now, digest))
        return session

    def close(self, token: str) -> None:
        self._forget(_digest(token))

    def expires_at(self, session: Session) -> float:
        return min(session.last_seen + self.idle_s, session.created + self.max_s)

    def shutdown(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __len__(self) -> int:
        return len(self._by_digest)


@dataclass(slots=True)
class _Count:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginThrottle:
    """``limit`` failures within ``window_s`` lock a key (a user name, an address) for
    ``window_s``; while locked, no password is even checked."""

    def __init__(
        self, per_user: int, per_address: int, window_s: float, clock: Callable[[], float]
    ) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window_s = window_s
        self.clock = clock
        self._counts: OrderedDict[tuple[str, str], _Count] = OrderedDict()

    def _keys(self, user: str, address: str) -> list[tuple[str, str]]:
        return [("user", user.casefold()), ("address", address)]

    def locked_until(self, user: str, address: str) -> float | None:
        now = self.clock()
        until = max(
            (
                c.locked_until
                for k in self._keys(user, address)
                if (c := self._counts.get(k)) is not None
            ),
            default=0.0,
        )
        return until if until > now else None

    def failed(self, user: str, address: str) -> float | None:
        """Count a failure; the time the lock lifts when this one locked a key."""
        now = self.clock()
        locked: float | None = None
        for key in self._keys(user, address):
            count = self._counts.pop(key, None) or _Count()
            self._counts[key] = count  # most recently used last
            count.failures = [t for t in count.failures if now - t < self.window_s]
            count.failures.append(now)
            if len(count.failures) >= self.limits[key[0]]:
                count.locked_until = now + self.window_s
                count.failures.clear()
                locked = count.locked_until
        while len(self._counts) > MAX_TRACKED:
            self._counts.popitem(last=False)
        return locked

    def succeeded(self, user: str) -> None:
        self._counts.pop(("user", user.casefold()), None)


def lockout_message(until: float, now: float, cfg: HallConfig) -> str:
    minutes = max(1, round((until - now) / 60))
    at = dt.datetime.fromtimestamp(until, cfg.hall.tzinfo)
    return f"登录失败次数过多，请于 {at:%H:%M} 后再试（约 {minutes} 分钟）"


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: web.Request, public_url: str) -> bool:
    """Whether a state-changing request comes from this site's pages. A request with
    neither Origin nor Referer is not a browser's (a script with a session must still show
    the CSRF token); ``Origin: null`` (sandboxed frames, file pages) is refused."""
    claimed = request.headers.get("Origin")
    if claimed is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return True
        claimed = _origin(referer) or "null"
    claimed = claimed.strip().lower()
    host = request.host.lower()
    allowed = {f"http://{host}", f"https://{host}", _origin(public_url)}
    return claimed in allowed


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt's outcome: the user, or refused (``failed`` when a wrong password
    was counted; ``locked_until`` when the name or address is locked, now or already)."""

    user: User | None = None
    locked_until: float | None = None
    failed: bool = False


class Gate:
    """The desk's users, their sessions and the login throttle, for one web server."""

    def __init__(
        self,
        cfg: HallConfig | None,
        clock: Callable[[], float] = time.time,
        *,
        users_file: Path | None = None,
        sessions_path: Path | None = None,
    ) -> None:
        """``cfg`` None: the bureau's dashboard, with the users of ``users_file`` and the
        default session and lockout settings. ``sessions_path``: where sessions are kept
        across restarts (None: in memory)."""
        settings = cfg.web if cfg is not None else WebConfig()
        self.cfg = cfg
        self.clock = clock
        self.directory = Directory(cfg, users_file=users_file)
        self.sessions = Sessions(
            settings.session_idle_min * 60,
            settings.session_max_h * 3600,
            lambda: self.clock(),
            sessions_path,
        )
        self.throttle = LoginThrottle(
            settings.login_failures_per_user,
            settings.login_failures_per_address,
            settings.lockout_min * 60,
            lambda: self.clock(),
        )
        # argon2 takes ~64 MiB and tens of ms per check: one at a time, off the loop
        self._verifying = asyncio.Semaphore(1)

    async def attempt(self, name: str, password: str, address: str) -> Attempt:
        """The lock is checked once it is this attempt's turn, so a burst of attempts
        queued behind the first is refused without hashing."""
        async with self._verifying:
            until = self.throttle.locked_until(name, address)
            if until is not None:
                return Attempt(locked_until=until)
            self.directory.refresh()
            user = self.directory.get(name)
            ok = await asyncio.to_thread(verify_password, user, password)
            if ok and user is not None:
                self.throttle.succeeded(name)
                return Attempt(user=user)
            return Attempt(locked_until=self.throttle.failed(name, address), failed=True)

    def session_of(self, request: web.Request) -> Session | None:
        self.directory.refresh()
        return self.sessions.get(request.cookies.get(COOKIE), self.directory)

    @staticmethod
    def csrf_ok(request: web.Request, session: Session) -> bool:
        sent = request.headers.get(CSRF_HEADER, "")
        return hmac.compare_digest(sent.encode(), session.csrf.encode())
