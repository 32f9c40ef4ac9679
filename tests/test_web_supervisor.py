"""The supervisor desk: logins, roles, CSRF, throttling, the audit log, TLS, and window
commands taking the pads' path."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import sqlite3
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from coordinator.web.server import AUDIT, GATE
from hallq import messages as m
from hallq.config import parse_config
from hallq.errors import ConfigError
from hallq.topics import HallTopics
from hallqctl.cli import main as cli

from .conftest import Inbox, Mosquitto
from .coordinated import FakeClock, device
from .halls import small_hall_text
from .test_web_helpers import (
    PASSWORD,
    VIEWER_PASSWORD,
    login,
    supervisor_auth,
    users_toml,
    web_hall,
    web_running,
)

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


async def _status(http: aiohttp.ClientSession, method: str, url: str, **kw: object) -> int:
    async with http.request(method, url, **kw) as r:  # type: ignore[arg-type]
        return r.status


async def test_desk_routes_need_a_session_and_a_right_password(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        for page in ("/supervisor", "/supervisor/hall"):  # the desk and any page under it
            async with http.get(url + page, allow_redirects=False) as r:
                assert r.status == 303
                assert r.headers["Location"] == f"/login?next={page}"
        for method, path in (
            ("GET", "/api/supervisor/whoami"),
            ("GET", "/api/session"),
            ("POST", "/api/supervisor/windows/1"),
            ("POST", "/api/logout"),
        ):
            assert (
                await _status(
                    http,
                    method,
                    url + path,
                    json={"action": "pause"},
                    headers={"Cookie": "hallq_session=forged"},
                )
                == 401
            ), path
        for user, password in (
            ("supervisor", "wrong password"),
            ("someone", PASSWORD),
            ("viewer", PASSWORD),
            ("", ""),
        ):
            async with http.post(
                f"{url}/api/login", json={"user": user, "password": password}
            ) as r:
                assert r.status == 401
                assert "hallq_session" not in r.cookies
                assert (await r.json())["error"]["message"].startswith("用户名或密码错误")
        async with http.post(f"{url}/api/login", data="user=supervisor") as r:
            assert r.status == 415  # a form post (what a cross-site page could send) is not JSON
        assert c.engine.windows[1].status == "open"

        async with http.post(
            f"{url}/api/login", json={"user": "supervisor", "password": PASSWORD}
        ) as r:
            assert r.status == 200
            cookie = r.cookies["hallq_session"]
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            assert not cookie["secure"]
            assert cookie["path"] == "/"
            body = await r.json()
            assert body["role"] == "supervisor"
            assert body["may_act"]
            assert len(body["csrf"]) > 30
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        async with http.get(f"{url}/favicon.ico") as r:  # every browser asks: not a 404
            assert r.status == 204
        auth = {"Cookie": f"hallq_session={cookie.value}"}
        async with http.get(f"{url}/api/supervisor/whoami", headers=auth) as r:
            assert r.status == 200
            assert (await r.json())["user"] == "supervisor"
        async with http.get(f"{url}/supervisor", headers=auth, allow_redirects=False) as r:
            assert r.status == 200
            assert "值班长" in await r.text()


async def test_a_viewer_looks_but_cannot_act(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        viewer = await login(http, url, "viewer", VIEWER_PASSWORD)
        async with http.get(f"{url}/api/session", headers=viewer) as r:
            assert (await r.json())["role"] == "viewer"
            assert not (await r.json())["may_act"]
        assert (
            await _status(http, "GET", f"{url}/api/supervisor/appointments", headers=viewer) == 200
        )
        async with http.post(
            f"{url}/api/supervisor/windows/1", headers=viewer, json={"action": "close"}
        ) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "forbidden"
        assert (
            await _status(
                http,
                "POST",
                f"{url}/api/supervisor/appointments",
                headers=viewer,
                json={"service": "tax-filing", "start": "10:00"},
            )
            == 403
        )
        assert await _status(http, "GET", f"{url}/api/supervisor/audit", headers=viewer) == 403
        assert c.engine.windows[1].status == "open"
        assert not c.bookings.on_day(dt.date(2026, 11, 30))
        supervisor = await supervisor_auth(http, url)
        async with http.get(f"{url}/api/supervisor/audit", headers=supervisor) as r:
            entries = await r.json()
        denied = [e for e in entries if e["action"] == "denied"]
        assert {(e["user"], e["target"], e["result"]) for e in denied} == {
            ("viewer", "/api/supervisor/windows/1", "viewer"),
            ("viewer", "/api/supervisor/appointments", "viewer"),
        }
        # the viewer can still log out
        assert await _status(http, "POST", f"{url}/api/logout", headers=viewer) == 200


async def test_a_change_needs_the_sessions_csrf_token_and_this_sites_origin(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        auth = await supervisor_auth(http, url)
        cookie_only = {"Cookie": auth["Cookie"]}
        target = f"{url}/api/supervisor/windows/1"
        for headers in (
            cookie_only,
            {**cookie_only, "X-CSRF-Token": "guess"},
            {**auth, "Origin": "http://evil.example"},
            {**auth, "Origin": "null"},
            {**auth, "Referer": "http://evil.example/page"},
        ):
            async with http.post(target, headers=headers, json={"action": "close"}) as r:
                assert r.status == 403, headers
        # the public booking form is protected the same way: no session, but no other site
        assert (
            await _status(
                http,
                "POST",
                f"{url}/api/appointments",
                headers={"Origin": "http://evil.example"},
                json={"service": "tax-filing", "start": "10:00"},
            )
            == 403
        )
        assert c.engine.windows[1].status == "open"
        async with http.post(
            target, headers={**auth, "Origin": url}, json={"action": "close"}
        ) as r:
            assert r.status == 200
        assert c.engine.windows[1].status == "closed"
        assert await _status(http, "POST", f"{url}/api/logout", headers=cookie_only) == 403
        assert await _status(http, "POST", f"{url}/api/logout", headers=auth) == 200
        # the token dies with the session
        assert await _status(http, "POST", target, headers=auth, json={"action": "open"}) == 401
        assert c.engine.windows[1].status == "closed"


async def test_repeated_failures_lock_the_name_and_the_address(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(
        mosquitto.url,
        str(tmp_path / "state"),
        web="login_failures_per_user = 3\nlogin_failures_per_address = 6\nlockout_min = 10",
    )
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        gate = c.web.runner.app[GATE]
        now = [1_800_000_000.0]  # 2027-01-15 16:00 Beijing time
        gate.clock = lambda: now[0]

        async def attempt(user: str, password: str) -> aiohttp.ClientResponse:
            async with http.post(
                f"{url}/api/login", json={"user": user, "password": password}
            ) as r:
                await r.read()
                return r

        for _ in range(2):
            assert (await attempt("supervisor", "nope nope nope")).status == 401
        locked = await attempt("supervisor", "nope nope nope")
        assert locked.status == 429
        assert locked.headers["Retry-After"] == "600"
        message = (await locked.json())["error"]["message"]
        assert message == "登录失败次数过多，请于 16:10 后再试（约 10 分钟）"
        # the right password changes nothing while locked, and is not even checked
        assert (await attempt("supervisor", PASSWORD)).status == 429
        now[0] += 300
        right = await attempt("supervisor", PASSWORD)
        assert right.status == 429
        assert "16:10" in (await right.json())["error"]["message"]
        now[0] += 301
        assert (await attempt("supervisor", PASSWORD)).status == 200

        # one address guessing at many names is stopped too, and the viewer with it
        for i in range(6):
            assert (await attempt(f"guess{i}", "x")).status == (429 if i == 5 else 401)
        assert (await attempt("viewer", VIEWER_PASSWORD)).status == 429
        now[0] += 601
        assert (await attempt("viewer", VIEWER_PASSWORD)).status == 200
        # a burst at once: the attempts queued behind the locking one are not even hashed
        burst = await asyncio.gather(*(attempt("viewer", f"burst {i}") for i in range(10)))
        assert sorted(r.status for r in burst) == [401, 401] + [429] * 8
        entries = c.web.runner.app[AUDIT].recent(50)
        results = [(e["user"], e["ok"], e["result"]) for e in entries if e["action"] == "login"]
        assert ("supervisor", False, "locked") in results
        assert ("(unknown)", False, "bad_credentials") in results
        assert all(e["client"] == "127.0.0.1" for e in entries)


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(
        mosquitto.url,
        str(tmp_path / "state"),
        web='trusted_proxies = ["127.0.0.1"]\nlogin_failures_per_address = 2',
    )
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):

        async def attempt(forwarded: str, password: str = "wrong", **headers: str) -> int:
            return await _status(
                http,
                "POST",
                f"{url}/api/login",
                json={"user": "viewer", "password": password},
                headers={"X-Forwarded-For": forwarded, **headers},
            )

        # the proxy appends the peer it saw; what the client wrote before it is not believed
        assert await attempt("10.9.9.9, 10.0.0.7") == 401
        assert await attempt("10.0.0.7") == 429  # the second failure from that PC locks it
        assert await attempt("10.0.0.7", VIEWER_PASSWORD) == 429
        assert await attempt("10.0.0.9", VIEWER_PASSWORD) == 200  # another PC is not locked
        async with http.post(
            f"{url}/api/login",
            json={"user": "supervisor", "password": PASSWORD},
            headers={"X-Forwarded-For": "10.0.0.8", "X-Forwarded-Proto": "https"},
        ) as r:
            assert r.status == 200
            assert r.cookies["hallq_session"]["secure"]
        clients = [e["client"] for e in c.web.runner.app[AUDIT].recent(10)]
        assert clients == ["10.0.0.8", "10.0.0.9", "10.0.0.7", "10.0.0.7"]
    with pytest.raises(ConfigError, match=r"web\.trusted_proxies"):
        parse_config(small_hall_text() + "\n[web]\ntrusted_proxies = ['proxy.lan']\n", environ={})


async def test_without_a_trusted_proxy_forwarded_headers_are_ignored(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/api/login",
            json={"user": "supervisor", "password": PASSWORD},
            headers={"X-Forwarded-For": "10.0.0.8", "X-Forwarded-Proto": "https"},
        ) as r,
    ):
        assert r.status == 200
        assert not r.cookies["hallq_session"]["secure"]
        assert c.web.runner.app[AUDIT].recent(1)[0]["client"] == "127.0.0.1"


async def test_sessions_expire_when_idle_and_at_their_age_limit(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(
        mosquitto.url, str(tmp_path / "state"), web="session_idle_min = 10\nsession_max_h = 1"
    )
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        gate = c.web.runner.app[GATE]
        now = [1_800_000_000.0]
        gate.clock = lambda: now[0]
        auth = await supervisor_auth(http, url)
        for _ in range(6):  # in use every 9 minutes: alive, until the hour is up
            now[0] += 9 * 60
            assert await _status(http, "GET", f"{url}/api/session", headers=auth) == 200
        now[0] += 9 * 60
        assert await _status(http, "GET", f"{url}/api/session", headers=auth) == 401
        auth = await supervisor_auth(http, url)
        now[0] += 10 * 60 + 1
        assert await _status(http, "GET", f"{url}/api/session", headers=auth) == 401


async def test_users_added_with_the_cli_log_in_and_removed_ones_are_out(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(small_hall_text(mosquitto.url, str(tmp_path / "state")) + "\n[web]\n")
    runner = CliRunner()
    secret = "Li Hua's pass 2026"
    done = runner.invoke(
        cli,
        [
            "user",
            "add",
            "lihua",
            "--role",
            "supervisor",
            "--config",
            str(hall_file),
            "--password-stdin",
        ],
        input=secret + "\n",
    )
    assert done.exit_code == 0, done.output
    users_file = tmp_path / "hall.users.toml"
    text = users_file.read_text()
    assert "$argon2id$" in text
    assert secret not in text
    assert secret not in done.output
    assert users_file.stat().st_mode & 0o777 == 0o640  # the service's group reads it
    assert users_file.stat().st_gid == tmp_path.stat().st_gid
    short = runner.invoke(
        cli,
        ["user", "add", "wang", "--role", "viewer", "--config", str(hall_file), "--password-stdin"],
        input="short\n",
    )
    assert short.exit_code != 0
    assert "at least 10" in short.output
    again = runner.invoke(
        cli,
        [
            "user",
            "add",
            "lihua",
            "--role",
            "viewer",
            "--config",
            str(hall_file),
            "--password-stdin",
        ],
        input=secret + "\n",
    )
    assert again.exit_code != 0
    assert "already exists" in again.output
    listed = runner.invoke(cli, ["user", "list", "--config", str(hall_file)])
    assert listed.output.split() == ["lihua", "supervisor", str(users_file)]
    checked = runner.invoke(cli, ["config", "check", str(hall_file)])
    assert "desk users: 1 supervisor(s), 0 viewer(s)" in " ".join(checked.output.split())

    from hallq.config import load_config

    cfg = load_config(hall_file, environ={})
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        auth = await login(http, url, "lihua", secret)
        assert (
            await _status(
                http,
                "POST",
                f"{url}/api/supervisor/windows/3",
                headers=auth,
                json={"action": "pause"},
            )
            == 200
        )
        # demoted while logged in: the session ends at its next request
        assert (
            runner.invoke(
                cli,
                [
                    "user",
                    "passwd",
                    "lihua",
                    "--role",
                    "viewer",
                    "--config",
                    str(hall_file),
                    "--password-stdin",
                ],
                input=secret + "\n",
            ).exit_code
            == 0
        )
        assert await _status(http, "GET", f"{url}/api/session", headers=auth) == 401
        auth = await login(http, url, "lihua", secret)
        assert (
            await _status(
                http,
                "POST",
                f"{url}/api/supervisor/windows/3",
                headers=auth,
                json={"action": "resume"},
            )
            == 403
        )
        assert (
            runner.invoke(cli, ["user", "remove", "lihua", "--config", str(hall_file)]).exit_code
            == 0
        )
        assert await _status(http, "GET", f"{url}/api/session", headers=auth) == 401
        async with http.post(f"{url}/api/login", json={"user": "lihua", "password": secret}) as r:
            assert r.status == 401
        assert c.engine.windows[3].status == "paused"


def test_the_hall_file_holds_hashes_never_passwords() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(small_hall_text(supervisor_password="in clear 12345"), environ={})
    assert "hallq user add" in str(exc.value)
    assert "in clear 12345" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_config(
            small_hall_text() + '\n[[web.users]]\nname = "x"\nrole = "supervisor"\n'
            'password_hash = "hunter2 hunter2"\n',
            environ={},
        )
    assert "web.users[0].password_hash" in str(exc.value)
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_config(
            small_hall_text() + "\n[web]\ntls_cert_file = 'a.crt'\n" + users_toml(), environ={}
        )
    assert "web.tls_key_file" in str(exc.value)


def _make_cert(d: Path) -> None:
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "web.key",
            "-out",
            "web.crt",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        cwd=d,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_the_coordinator_serves_the_desk_over_tls(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    _make_cert(tmp_path)
    cfg = web_hall(
        mosquitto.url,
        str(tmp_path / "state"),
        web=f"tls_cert_file = '{tmp_path}/web.crt'\ntls_key_file = '{tmp_path}/web.key'",
    )
    trusted = ssl.create_default_context(cafile=str(tmp_path / "web.crt"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http,
    ):
        assert url.startswith("https://127.0.0.1:")
        async with http.post(
            f"{url}/api/login", json={"user": "supervisor", "password": PASSWORD}
        ) as r:
            assert r.status == 200
            assert r.cookies["hallq_session"]["secure"]
            token = r.cookies["hallq_session"].value
            csrf = (await r.json())["csrf"]
        async with http.post(
            f"{url}/api/supervisor/windows/4",
            json={"action": "pause"},
            headers={"Cookie": f"hallq_session={token}", "X-CSRF-Token": csrf, "Origin": url},
        ) as r:
            assert r.status == 200
        assert c.engine.windows[4].status == "paused"
        with pytest.raises(aiohttp.ClientError):  # no plain HTTP on the TLS port
            async with http.get(url.replace("https", "http") + "/api/hall") as r:
                await r.read()
    # a certificate that cannot be loaded is named, and stops only the web server
    from coordinator.web.server import tls_context

    (tmp_path / "bad.crt").write_text("not a certificate")
    with pytest.raises(OSError, match=r"web\.tls_cert_file '.*bad\.crt'"):
        tls_context(tmp_path / "bad.crt", tmp_path / "web.key")


async def test_every_supervisor_action_is_audited_with_who_what_when_where(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_, url),
        aiohttp.ClientSession() as http,
    ):
        auth = await supervisor_auth(http, url)
        for window, action in ((2, "pause"), (2, "resume"), (99, "open")):
            await _status(
                http,
                "POST",
                f"{url}/api/supervisor/windows/{window}",
                headers=auth,
                json={"action": action},
            )
        await _status(
            http,
            "POST",
            f"{url}/api/supervisor/windows/4",
            headers=auth,
            json={"action": "set_skills", "skills": {"invoice": 1.0}},
        )
        await _status(
            http,
            "POST",
            f"{url}/api/supervisor/appointments",
            headers=auth,
            json={"service": "tax-filing", "start": "11:00", "note": "张三 110101199003074258"},
        )
        async with http.get(f"{url}/api/supervisor/audit", headers=auth) as r:
            shown = {e["action"]: e for e in await r.json()}
        # the desk's words: the hall's time zone, whatever the browser's; a refusal in Chinese
        for e in shown.values():
            assert (
                e["when"] == f"{dt.datetime.fromtimestamp(e['at'], cfg.hall.tzinfo):%m-%d %H:%M:%S}"
            )
        assert shown["open"]["result_zh"] == "没有这个窗口"
        assert shown["pause"]["result_zh"] is None
        await _status(http, "POST", f"{url}/api/logout", headers=auth)
    with sqlite3.connect(tmp_path / "log-audit.sqlite") as db:
        rows = db.execute(
            "SELECT user, role, action, target, ok, result, client, detail, at"
            " FROM audit ORDER BY id"
        ).fetchall()
    assert [(r[0], r[2], r[3], bool(r[4]), r[5]) for r in rows] == [
        ("supervisor", "login", None, True, None),
        ("supervisor", "pause", "window 2", True, None),
        ("supervisor", "resume", "window 2", True, None),
        ("supervisor", "open", "window 99", False, "unknown_window"),
        ("supervisor", "set_skills", "window 4", True, None),
        ("supervisor", "invite", rows[5][3], True, None),
        ("supervisor", "logout", None, True, None),
    ]
    assert rows[5][3].startswith("appointment ")
    assert json.loads(rows[4][7]) == {"skills": {"invoice": 1.0}}
    assert {r[1] for r in rows} == {"supervisor"}
    assert {r[6] for r in rows} == {"127.0.0.1"}
    # the hall's clock (the demo's runs faster; in a hall it is the wall clock)
    assert {r[8] for r in rows} == {clock.now}
    # the note's ID number was redacted before it reached any file
    for path in tmp_path.glob("log*.sqlite*"):
        assert b"110101199003074258" not in path.read_bytes(), path


async def test_the_day_report_lists_the_desk_s_actions_at_the_hall_s_times(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Found walking the demo, whose hall clock runs 60 times faster: the day report put
    a pause made at 11:25 and one at 11:56 both at 12:22 (wall-clock stamps, moved by the
    clocks' difference at the moment it was read). The audit log keeps the hall's time."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()  # 10:00, and it moves as the test says, not as the wall clock does
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_, url),
        aiohttp.ClientSession() as http,
    ):
        auth = await supervisor_auth(http, url)
        for action, minutes in (("pause", 25), ("resume", 90)):
            clock.now += minutes * 60
            window = f"{url}/api/supervisor/windows/2"
            assert await _status(http, "POST", window, headers=auth, json={"action": action}) == 200
        clock.now += 50 * 60
        async with http.get(f"{url}/supervisor/report", headers=auth) as r:
            assert r.status == 200
            page = await r.text()
    assert "<td>10:25</td><td>暂停</td><td>2号窗口</td>" in page
    assert "<td>11:55</td><td>恢复</td><td>2号窗口</td>" in page


async def test_a_supervisor_command_is_logged_and_published_like_a_pads(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    log_path = tmp_path / "log.sqlite"
    window2 = inbox()
    async with (
        web_running(cfg, log_path, FakeClock()) as (c, url),
        device(cfg, "board", "board-1", tmp_path) as board,
        aiohttp.ClientSession() as http,
    ):
        await board.subscribe(T.window_state(2), window2)
        await window2.wait_for(lambda ps: bool(ps))
        auth = await supervisor_auth(http, url)
        async with http.post(
            f"{url}/api/supervisor/windows/2", headers=auth, json={"action": "pause"}
        ) as r:
            assert r.status == 200
            assert (await r.json())["ok"]
        assert c.engine.windows[2].status == "paused"
        await window2.wait_for(lambda ps: ps[-1].status == "paused")

        async with http.post(
            f"{url}/api/supervisor/windows/2",
            headers=auth,
            json={"action": "set_skills", "skills": {"invoice": 1.0, "tax-filing": 2.0}},
        ) as r:
            assert r.status == 200
        await window2.wait_for(lambda ps: ps[-1].skills == {"invoice": 1.0, "tax-filing": 2.0})

        async with http.post(
            f"{url}/api/supervisor/windows/2", headers=auth, json={"action": "call"}
        ) as r:
            assert r.status == 400  # not a supervisor action here
        async with http.post(
            f"{url}/api/supervisor/windows/2",
            headers=auth,
            json={"action": "set_skills", "skills": {"nope": 1.0}},
        ) as r:
            assert r.status == 409
            assert (await r.json())["error"]["code"] == "unknown_service"
        async with http.post(
            f"{url}/api/supervisor/windows/99", headers=auth, json={"action": "open"}
        ) as r:
            assert r.status == 409
        # found by tests/test_fuzz_http.py: these were 500s
        async with http.post(
            f"{url}/api/supervisor/windows/2", headers=auth, json={"action": []}
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "bad_action"
        async with http.post(
            f"{url}/api/supervisor/appointments",
            headers=auth,
            json={"service": "tax-filing", "start": "09:00", "day": 5},
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "bad_day"
    with sqlite3.connect(log_path) as db:
        rows = db.execute("SELECT source, payload FROM entries WHERE kind = 'window'").fetchall()
    assert [(src, json.loads(p)["action"]) for src, p in rows][:2] == [
        ("supervisor/supervisor", "pause"),
        ("supervisor/supervisor", "set_skills"),
    ]
    assert PASSWORD not in (tmp_path / "log.sqlite").read_bytes().decode("latin1")


async def test_a_closed_window_survives_a_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    log_path = tmp_path / "log.sqlite"
    async with (
        web_running(cfg, log_path, FakeClock()) as (_c, url),
        aiohttp.ClientSession() as http,
    ):
        assert (
            await _status(
                http,
                "POST",
                f"{url}/api/supervisor/windows/1",
                headers=await supervisor_auth(http, url),
                json={"action": "close"},
            )
            == 200
        )
    async with web_running(cfg, log_path, FakeClock()) as (c, url):
        assert c.engine.windows[1].status == "closed"
        # and the pads are refused on a closed window, through the same engine
        async with device(cfg, "window", "pi-w1", tmp_path) as pad:
            await pad.wait_connected(10)
            reply = await pad.request(
                T.cmd("window", "pi-w1"), m.WindowAction(window=1, action="call"), timeout=10
            )
            assert not reply.ok
            assert reply.error.code == "window_closed"


async def test_a_supervisor_stays_logged_in_across_a_coordinator_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """systemd restarts a crashed coordinator mid-shift: the supervisor's desk keeps
    working with the same cookie and CSRF token, a session logged out stays out, and what
    is kept on disk lets nobody in (no token, no CSRF token)."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    log_path = tmp_path / "log.sqlite"
    async with (
        web_running(cfg, log_path, FakeClock()) as (_c, url),
        aiohttp.ClientSession() as http,
    ):
        auth = await supervisor_auth(http, url)
        assert await _status(http, "GET", f"{url}/api/session", headers=auth) == 200
        viewer = await login(http, url, "viewer", VIEWER_PASSWORD)
        assert await _status(http, "POST", f"{url}/api/logout", headers=viewer) == 200
    kept = b"".join(p.read_bytes() for p in tmp_path.glob("log-sessions.sqlite*"))
    assert kept, "sessions are kept beside the event log"
    token = auth["Cookie"].split("=", 1)[1]
    assert token.encode() not in kept
    assert auth["X-CSRF-Token"].encode() not in kept
    async with (
        web_running(cfg, log_path, FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        pause = {"action": "pause"}
        forged = {**auth, "X-CSRF-Token": "x" * 64}
        window = f"{url}/api/supervisor/windows/1"
        assert await _status(http, "POST", window, headers=forged, json=pause) == 403
        assert await _status(http, "POST", window, headers=auth, json=pause) == 200
        assert c.engine.windows[1].status == "paused"
        assert await _status(http, "GET", f"{url}/api/session", headers=viewer) == 401


def test_a_broken_users_file_keeps_the_last_good_users(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from coordinator.web.users import Directory

    users_file = tmp_path / "hall.users.toml"
    users_file.write_text(users_toml({"wang": ("viewer", "wang's password")}, table="users"))
    cfg = parse_config(small_hall_text() + f"\n[web]\nusers_file = '{users_file}'\n", environ={})
    directory = Directory(cfg)
    assert [(u.name, u.role) for u in directory.all()] == [("wang", "viewer")]
    users_file.write_text('[[users]]\nname = "wang"\nrole = "admin"\npassword_hash = "x"\n')
    directory.refresh()
    assert [u.name for u in directory.all()] == ["wang"]
    assert "users[0].role" in caplog.text
    assert "keeping the previous users" in caplog.text
    assert 'password_hash = "x"' not in caplog.text
    users_file.unlink()
    directory.refresh()
    assert directory.all() == []


async def test_the_desk_refuses_in_chinese_with_a_stable_code_and_says_what_an_action_does(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """开窗 on an open window changes nothing and is refused as such (not logged as a
    command); refusals carry a machine-readable code and a Chinese message; the impact of
    closing a window counts the people who will be served elsewhere."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    log_path = tmp_path / "log.sqlite"
    async with (
        web_running(cfg, log_path, FakeClock()) as (_c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        for service in ("tax-filing", "tax-filing", "invoice"):
            reply = await dispenser.request(
                dispenser.topics.req("pi-d1"),
                m.IssueRequest(kind="issue", service=service),
                timeout=10,
            )
            assert reply.ok
        auth = await supervisor_auth(http, url)

        async def post(path: str, body: Any) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{url}{path}", headers=auth, json=body) as r:
                return r.status, await r.json()

        cases = [
            (3, {"action": "open"}, 409, "no_change", "3号窗口已在开放中"),
            (99, {"action": "open"}, 409, "unknown_window", "没有99号窗口"),
            (3, {"action": "set_skills", "skills": {}}, 400, "no_skills", "至少要保留一项业务"),
            (3, {"action": "set_skills", "skills": {"nope": 1}}, 409, "unknown_service", "业务"),
            (3, {"action": "set_skills", "skills": {"invoice": 99}}, 400, "bad_weight", "权重"),
            (3, {"action": "call"}, 400, "bad_action", "不支持的操作"),
        ]
        for window, body, status, code, words in cases:
            got, answer = await post(f"/api/supervisor/windows/{window}", body)
            assert (got, answer["error"]["code"]) == (status, code), (body, answer)
            assert words in answer["error"]["message"], answer
            assert not any("a" <= ch <= "z" for ch in answer["error"]["message"].split("(")[0])
        status, impact = await post("/api/supervisor/windows/4/impact", {"action": "close"})
        assert status == 200
        assert impact["text"] == "关闭后 3 人转到其他窗口"  # window 4: tax-filing and invoice
        assert impact["people"] == 3
        status, impact = await post(
            "/api/supervisor/windows/2/impact",
            {"action": "set_skills", "skills": {"tax-filing": 1.0}},
        )
        assert impact["text"].startswith("2号窗口改业务: 1 人转到其他窗口; 新增 申报纳税"), impact
    with sqlite3.connect(log_path) as db:
        logged = db.execute(
            "SELECT count(*) FROM entries WHERE source LIKE 'supervisor/%'"
        ).fetchone()[0]
    assert logged == 2  # only the unknown window and service reached the engine (refused there)


def test_the_audit_log_pages_from_any_integer_without_failing(tmp_path: Path) -> None:
    """``?before=`` past SQLite's 64-bit integers was a 500 (found by tests/test_fuzz_http.py):
    any integer pages as the nearest id bound would."""
    from coordinator.web.audit import AuditLog

    log = AuditLog(tmp_path / "audit.sqlite")
    first = log.record("supervisor", "login")
    log.record("supervisor", "pause", target="window 3")
    newest_first = [e["action"] for e in log.recent(10)]
    assert newest_first == ["pause", "login"]
    assert [e["action"] for e in log.recent(10, before=2**63)] == newest_first
    assert [e["action"] for e in log.recent(10, before=10**30)] == newest_first
    assert log.recent(10, before=-(2**63) - 1) == []
    assert [e["action"] for e in log.recent(10, before=first + 1)] == ["login"]
