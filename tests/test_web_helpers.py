"""Helpers for the web tests (no tests here): a coordinator with its web server running."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher
from pydantic import SecretStr

from coordinator.service import Coordinator
from coordinator.web.server import start_web
from hallq.config import HallConfig, parse_config

from .coordinated import running
from .halls import small_hall_text, two_site_hall_text

PASSWORD = "correct horse battery"
VIEWER_PASSWORD = "just looking 12345"
ID_HASH_KEY = "web-test-id-hash-key-0001"
MATERIALS = ["居民身份证原件", "财务报表"]
# cheap parameters keep the tests quick; a hash carries its parameters, so verifying it
# is the same code path as a production hash
_TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
USERS = {"supervisor": ("supervisor", PASSWORD), "viewer": ("viewer", VIEWER_PASSWORD)}


def users_toml(users: dict[str, tuple[str, str]] = USERS, table: str = "web.users") -> str:
    """``[[web.users]]`` entries (or a users file's ``[[users]]``) holding argon2 hashes."""
    return "".join(
        f'\n[[{table}]]\nname = "{name}"\nrole = "{role}"\n'
        f'password_hash = "{_TEST_HASHER.hash(password)}"\n'
        for name, (role, password) in users.items()
    )


def web_hall(
    broker_url: str, state_dir: str, *, web: str = "", two_sites: bool = False, **coordinator: Any
) -> HallConfig:
    """The small hall with a supervisor and a viewer, and materials for tax filing;
    ``web`` adds keys to its ``[web]`` table; ``two_sites``: window 4 and dispenser pi-d2
    in a branch building (``two_site_hall_text``)."""
    coordinator.setdefault("appointment_capacity", 2)
    if two_sites:  # (with the small hall's own coordinator settings)
        text = two_site_hall_text(broker_url, state_dir)
    else:
        text = small_hall_text(broker_url, state_dir, **coordinator)
    text = text.replace(
        "wait_target_min = 10\n",
        'wait_target_min = 10\nmaterials = ["居民身份证原件", "财务报表"]\n',
        1,
    )
    text += f"\n[web]\n{web}\n" + users_toml()
    cfg = parse_config(text, "web-hall.toml")
    security = cfg.security.model_copy(update={"id_hash_key": SecretStr(ID_HASH_KEY)})
    return cfg.model_copy(update={"security": security})


@contextlib.asynccontextmanager
async def web_running(
    cfg: HallConfig, log_path: Path, clock: Callable[[], float]
) -> AsyncIterator[tuple[Coordinator, str]]:
    async with running(cfg, log_path, clock) as coordinator:
        server = await start_web(coordinator, "127.0.0.1", 0)
        try:
            yield coordinator, server.url
        finally:
            await server.stop()


async def login(
    http: aiohttp.ClientSession, url: str, user: str, password: str, **kw: Any
) -> dict[str, str]:
    """Log in as a script would; the headers of that session's requests (cookie and CSRF
    token), so a test's ClientSession needs no cookie jar that accepts IP addresses."""
    async with http.post(f"{url}/api/login", json={"user": user, "password": password}, **kw) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
        token = r.cookies["hallq_session"].value
    return {"Cookie": f"hallq_session={token}", "X-CSRF-Token": body["csrf"]}


async def supervisor_auth(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """Request headers of a logged-in supervisor."""
    return await login(http, url, "supervisor", PASSWORD)
