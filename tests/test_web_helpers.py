"""Helpers for the web tests (no tests here): a coordinator with its web server running."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from coordinator.service import Coordinator
from coordinator.web.server import start_web
from hallq.config import HallConfig, parse_config

from .coordinated import running
from .halls import small_hall_text

PASSWORD = "correct horse battery"
ID_HASH_KEY = "web-test-id-hash-key-0001"
MATERIALS = ["居民身份证原件", "财务报表"]


def web_hall(broker_url: str, state_dir: str, **coordinator: Any) -> HallConfig:
    """The small hall with a supervisor password and materials for tax filing."""
    coordinator.setdefault("supervisor_password", PASSWORD)
    coordinator.setdefault("appointment_capacity", 2)
    text = small_hall_text(broker_url, state_dir, **coordinator)
    text = text.replace('wait_target_min = 10\n',
                        'wait_target_min = 10\nmaterials = ["居民身份证原件", "财务报表"]\n', 1)
    cfg = parse_config(text, "web-hall.toml")
    security = cfg.security.model_copy(update={"id_hash_key": SecretStr(ID_HASH_KEY)})
    return cfg.model_copy(update={"security": security})


@contextlib.asynccontextmanager
async def web_running(cfg: HallConfig, log_path: Path, clock: Callable[[], float]
                      ) -> AsyncIterator[tuple[Coordinator, str]]:
    async with running(cfg, log_path, clock) as coordinator:
        server = await start_web(coordinator, "127.0.0.1", 0)
        try:
            yield coordinator, server.url
        finally:
            await server.stop()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def supervisor_auth() -> dict[str, str]:
    """Request headers of a logged-in supervisor."""
    return basic("supervisor", PASSWORD)
