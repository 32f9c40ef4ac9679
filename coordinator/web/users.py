"""Who may log into the supervisor desk: users with argon2id password hashes and a role.

Users come from the hall file's ``[[web.users]]`` and from the users file beside it, which
``hallq user add`` writes; both hold hashes only. The users file is read again when it
changes, so a supervisor added or removed takes effect without restarting the coordinator
(and a removed user's sessions end at their next request). ``HALLQ_SUPERVISOR_PASSWORD``
still yields a first supervisor (hashed in memory at start) so a fresh hall and the demo
can log in before anyone ran ``hallq user add``.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import ValidationError

from hallq.config import HallConfig, WebUser

log = logging.getLogger("hallq.web")

ROLES = ("supervisor", "viewer")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, t=3)


@cache
def _dummy() -> str:
    """Verified against when the user name is unknown, so the answer takes as long."""
    return _HASHER.hash("not anybody's password")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password_hash: str

    @property
    def may_act(self) -> bool:
        return self.role == "supervisor"


def hash_password(password: str, hasher: PasswordHasher = _HASHER) -> str:
    return hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    """Slow on purpose (argon2): call it off the event loop."""
    try:
        return _HASHER.verify(user.password_hash if user else _dummy(), password) and (
            user is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file and what is wrong."""


def read_users_file(path: Path) -> list[User]:
    """The users in ``path`` (none when it does not exist)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersFileError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsersFileError(f"{path}: TOML syntax error: {exc}") from None
    entries = data.get("users", [])
    if set(data) - {"users"} or not isinstance(entries, list):
        raise UsersFileError(f"{path}: expected only [[users]] tables")
    users: list[User] = []
    for i, entry in enumerate(entries):
        try:
            user = WebUser.model_validate(entry)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "entry"
            raise UsersFileError(f"{path}: users[{i}].{where}: {exc.errors()[0]['msg']}") from None
        if any(u.name == user.name for u in users):
            raise UsersFileError(f"{path}: users[{i}].name: duplicate user {user.name!r}")
        users.append(User(user.name, user.role, user.password_hash))
    return users


def write_users_file(path: Path, users: list[User]) -> None:
    """Replace the file atomically, readable by its owner and group only (hashes are still
    secrets: a stolen hash can be guessed at offline). The group is the folder's, so with
    /etc/hallq root:hallq 0750 the coordinator (group hallq) reads what `sudo hallq user`
    wrote."""
    lines = ["# hallq supervisor desk users: written by `hallq user`; argon2id hashes only", ""]
    for u in sorted(users, key=lambda u: u.name):
        lines += [
            "[[users]]",
            f'name = "{u.name}"',
            f'role = "{u.role}"',
            f'password_hash = "{u.password_hash}"',
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o640)
        group = path.parent.stat().st_gid
        if os.stat(out.fileno()).st_gid != group:
            try:
                os.fchown(out.fileno(), -1, group)
            except PermissionError:
                pass  # not root and not in that group: the file keeps the writer's group
        out.write("\n".join(lines))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class Directory:
    """The users as of now: the hall file's, the users file's (reloaded on change), and the
    bootstrap supervisor from the environment."""

    def __init__(self, cfg: HallConfig | None, *, users_file: Path | None = None) -> None:
        """``cfg`` None: only the users of ``users_file`` (the bureau's dashboard, which
        has no hall file)."""
        self._fixed: dict[str, User] = {}
        self._cfg = cfg
        self.path = users_file
        if cfg is not None:
            self._fixed = {u.name: User(u.name, u.role, u.password_hash) for u in cfg.web.users}
            settings = cfg.coordinator
            if settings.supervisor_password is not None and (
                settings.supervisor_user not in self._fixed
            ):
                self._fixed[settings.supervisor_user] = User(
                    settings.supervisor_user,
                    "supervisor",
                    hash_password(settings.supervisor_password.get_secret_value()),
                )
            self.path = cfg.web.users_file
        self._stamp: tuple[int, int] | None = None
        self._from_file: dict[str, User] = {}
        self.refresh()
        if not self.all():
            log.warning(
                "no supervisor desk users: nobody can log in (add one with "
                "`hallq user add NAME --role supervisor --config HALL.toml`)"
            )

    def refresh(self) -> None:
        """Read the users file again if it changed; a broken file keeps the last good one."""
        if self.path is None:
            return
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            if self._stamp != (-1, -1):
                log.error(
                    "users file %s cannot be read, keeping the previous users: %s", self.path, exc
                )
                self._stamp = (-1, -1)
            return
        if stamp == self._stamp:
            return
        try:
            users = read_users_file(self.path) if stamp is not None else []
        except UsersFileError as exc:
            log.error("users file not (re)loaded, keeping the previous users: %s", exc)
            self._stamp = stamp
            return
        self._stamp = stamp
        loaded: dict[str, User] = {}
        for u in users:
            taken = self._cfg.device_login(u.name) if self._cfg is not None else None
            if taken is not None:
                log.error(
                    "users file %s: user %r %s; not loaded: rename it "
                    "(`hallq user remove`, then `hallq user add`)",
                    self.path,
                    u.name,
                    taken,
                )
            elif u.name in self._fixed:
                log.warning(
                    "users file %s: user %r is also defined in the hall file; the "
                    "hall file's entry is used",
                    self.path,
                    u.name,
                )
            else:
                loaded[u.name] = u
        self._from_file = loaded

    def get(self, name: str) -> User | None:
        return self._fixed.get(name) or self._from_file.get(name)

    def all(self) -> list[User]:
        return [*self._fixed.values(), *self._from_file.values()]
