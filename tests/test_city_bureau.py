"""The bureau's side: the hourly rollup and KPIs on the real city database, the monthly
comfort index, the live city view's rules, and the dashboard's HTTP answers."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from city.bureau import CityDb, CityMapError, LiveCity, load_city_map, make_app
from city.replay import LogRow, write_rows
from hallq import messages as m
from hallq.topics import HallTopics
from hallqctl.mosquitto import free_port

from .citydb import city_dsn, psycopg_module
from .test_city_ship import day_rows

__all__ = ["city_dsn"]

DAYS = (dt.date(2026, 3, 16), dt.date(2026, 3, 17))
HALLS = ("east", "west")


def expected(rows: list[LogRow]) -> dict[str, tuple[int, float]]:
    """service -> (tickets issued, total wait in s to their first call), from the log."""
    issued: dict[str, tuple[str, float]] = {}
    first_call: dict[str, float] = {}
    for kind, _, _, at, _, payload, result in rows:
        body = json.loads(payload)
        res = json.loads(result) if result else {}
        if kind == "ticket" and body.get("kind") == "issue":
            issued[res["ticket"]] = (body["service"], at)
        elif body.get("action") == "call":
            first_call.setdefault(res["ticket"], at)
    out: dict[str, tuple[int, float]] = {}
    for ticket, (service, at) in issued.items():
        n, w = out.get(service, (0, 0.0))
        out[service] = (n + 1, w + first_call[ticket] - at)
    return out


@pytest.fixture
def shipped(city_dsn: str, tmp_path: Path) -> dict[tuple[str, dt.date], list[LogRow]]:
    from city.ship import Shipper

    logs: dict[tuple[str, dt.date], list[LogRow]] = {}
    for h, hall in enumerate(HALLS):
        path = tmp_path / f"events-{hall}.sqlite"
        for day in DAYS:
            rows = day_rows(volume=300 * (h + 1), day=day, seed=h)
            logs[(hall, day)] = rows
            write_rows(path, rows)
        shipper = Shipper(hall, path, city_dsn)
        while shipper.ship_once():
            pass
        shipper.close()
    psycopg = psycopg_module()
    with psycopg.connect(city_dsn, autocommit=True) as conn:
        for day in DAYS:
            assert conn.execute("SELECT hallq_rollup_day(%s)", (day,)).fetchone()[0] > 0
            conn.execute("SELECT hallq_rollup_day(%s)", (day,))  # again: same rows
    return logs


def test_kpis_by_hall_day_service_and_hour_add_up_to_the_logs(
    city_dsn: str, shipped: dict[tuple[str, dt.date], list[LogRow]]
) -> None:
    from city.kpi import kpis

    psycopg = psycopg_module()
    with psycopg.connect(city_dsn, autocommit=True) as conn:
        by_hall = {r["hall"]: r for r in kpis(conn, "hall", DAYS[0], DAYS[1])}
        for hall in HALLS:
            per_day = [expected(shipped[(hall, d)]) for d in DAYS]
            tickets = sum(n for e in per_day for n, _ in e.values())
            waits = sum(w for e in per_day for _, w in e.values())
            assert by_hall[hall]["issued"] == by_hall[hall]["called"] == tickets
            assert by_hall[hall]["finished"] == tickets
            assert by_hall[hall]["avg_wait_min"] == pytest.approx(waits / tickets / 60, abs=0.01)
        total = sum(r["issued"] for r in by_hall.values())
        for by in ("day", "service", "hour"):
            rows = kpis(conn, by, DAYS[0], DAYS[1])
            assert sum(r["issued"] for r in rows) == total, by
        one_day = kpis(conn, "service", DAYS[1], DAYS[1], hall="east")
        want = expected(shipped[("east", DAYS[1])])
        assert {r["service"]: r["issued"] for r in one_day} == {s: n for s, (n, _) in want.items()}
        hours = [r["hour"] for r in kpis(conn, "hour", DAYS[0], DAYS[1])]
        assert hours == sorted(hours)
        assert 8 <= hours[0]
        assert hours[-1] <= 18  # hall time
        with pytest.raises(ValueError, match="by must be one of"):
            kpis(conn, "window", DAYS[0], DAYS[1])  # type: ignore[arg-type]


def test_a_withdrawn_call_is_nobodys_wait_in_the_city_kpis(city_dsn: str, tmp_path: Path) -> None:
    """A001's reply was lost, a window called it, then the dispenser's offline ticket
    replaced it (issue 15): the city counts both numbers issued, as the hall does, and
    neither A001's call nor its wait (nobody held it)."""
    from city.ship import Shipper
    from coordinator.dispatch import load_core

    from .halls import at
    from .test_hallqueue import issue, lease, make_queue, offline_issue
    from .test_withdrawn_calls import _window

    log_path = tmp_path / "events-east.sqlite"
    q = make_queue(log_path, load_core("pure"))
    first = lease(q)
    online = issue()
    assert q.submit("ticket", "dispenser", "pi-d1", online, at(9)).record["ok"]
    assert _window(q, "call", 3)["ticket"] == "A001"
    replay = q.submit(
        "ticket", "dispenser", "pi-d1", offline_issue(f"A{first}", online.id), at(9, 6)
    )
    assert replay.record["withdrawn"]["ticket"] == "A001"
    q.log.close()
    shipper = Shipper("east", log_path, city_dsn)
    while shipper.ship_once():
        pass
    shipper.close()
    psycopg = psycopg_module()
    with psycopg.connect(city_dsn, autocommit=True) as conn:
        conn.execute("SELECT hallq_rollup_day(%s)", (dt.date(2026, 11, 30),))
        row = conn.execute(
            "SELECT issued, called, finished, wait_sum_s FROM kpi_daily WHERE hall_id = 'east'"
        ).fetchone()
    assert row == (2, 0, 0, 0.0)


def test_the_monthly_comfort_index_per_hall_as_csv_and_png(
    city_dsn: str, shipped: dict[tuple[str, dt.date], list[LogRow]], tmp_path: Path
) -> None:
    from city.kpi import comfort_csv, comfort_month, comfort_png

    psycopg = psycopg_module()
    with psycopg.connect(city_dsn, autocommit=True) as conn:
        months = comfort_month(conn, DAYS[0])
        assert comfort_month(conn, dt.date(2026, 4, 1)) == []
    assert sorted(h.hall for h in months) == sorted(HALLS)
    for h in months:
        assert sum(h.shares) == pytest.approx(1, abs=0.001)
        assert h.hours > 0
        assert 0 <= h.index <= 100
        assert h.month == "2026-03"
    text = comfort_csv(months)
    assert text.startswith("\ufeff")
    table = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert table[0][4:7] == ["较少 %", "适中 %", "较多 %"]
    assert len(table) == 3
    png = comfort_png(months, "办税舒适度 2026-03")
    assert png.startswith(b"\x89PNG")
    (tmp_path / "comfort.png").write_bytes(png)


def queue_msg(rev: int, service: str, waiting: int, eta: float) -> bytes:
    return m.encode(m.QueueState(rev=rev, service=service, waiting=waiting, eta_min=eta))


def test_the_live_city_keeps_the_newest_revision_and_ranks_halls_by_expected_wait() -> None:
    live = LiveCity()
    east, west = HallTopics("east"), HallTopics("west")
    now = 1_000_000.0
    assert live.apply(east.queue_state("invoice"), queue_msg(5, "invoice", 30, 12.0), now)
    assert live.apply(west.queue_state("invoice"), queue_msg(2, "invoice", 10, 4.0), now)
    assert not live.apply(east.queue_state("invoice"), queue_msg(4, "invoice", 99, 60.0), now)
    assert not live.apply(east.cmd("window", "pi-w1"), b"{}", now)  # not a summary
    assert not live.apply(east.queue_state("invoice"), b"not json", now)
    assert [h["hall"] for h in live.least_crowded("invoice", now=now)] == ["west", "east"]
    # east goes quiet
    assert live.apply(east.queue_state("invoice"), queue_msg(6, "invoice", 0, 0.0), now + 5)
    assert live.least_crowded("invoice", now=now + 5)[0] == {
        "hall": "east",
        "waiting": 0,
        "eta_min": 0.0,
    }
    # a hall silent for five minutes is not recommended
    assert [h["hall"] for h in live.least_crowded("invoice", now=now + 303)] == ["east"]
    window = m.WindowState(rev=1, window=3, zone="hall-1", status=m.WindowStatus.OPEN)
    assert live.apply(east.window_state(3), m.encode(window), now)
    assert live.halls["east"].windows_open == 1
    assert live.halls["east"].waiting == 0


async def test_the_dashboard_answers_live_kpi_and_comfort_requests(
    city_dsn: str, shipped: dict[tuple[str, dt.date], list[LogRow]]
) -> None:
    live = LiveCity()
    live.apply(HallTopics("east").queue_state("invoice"), queue_msg(1, "invoice", 3, 1.5))
    db = CityDb(city_dsn)
    port = free_port()
    runner = web.AppRunner(make_app(live, db))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/halls") as r:
                assert [h["hall"] for h in await r.json()] == ["east"]
            async with http.get(f"{base}/api/least-crowded?service=invoice") as r:
                assert (await r.json())["halls"][0]["hall"] == "east"
            async with http.get(f"{base}/api/kpi?by=service&from=2026-03-16&to=2026-03-17") as r:
                assert r.status == 200
                assert sum(x["issued"] for x in (await r.json())["rows"]) > 0
            async with http.get(f"{base}/api/kpi?by=window") as r:
                assert r.status == 400
                assert "by" in await r.text()
            started = time.perf_counter()
            async with http.get(f"{base}/api/comfort.csv?month=2026-03") as r:
                assert r.status == 200
                assert "较少" in (await r.read()).decode()
            assert time.perf_counter() - started < 30
            async with http.get(f"{base}/api/comfort.png?month=2026-03") as r:
                assert (await r.read()).startswith(b"\x89PNG")
            async with http.get(f"{base}/api/comfort.csv?month=March") as r:
                assert r.status == 400
                assert "YYYY-MM" in await r.text()
            async with http.get(f"{base}/") as r:
                page = await r.text()
                assert "This month by hall" in page
                assert "city database:" not in page  # the month's KPIs were read
    finally:
        await runner.cleanup()
        db.close()


async def test_without_a_database_the_live_view_still_answers() -> None:
    live = LiveCity()
    port = free_port()
    runner = web.AppRunner(make_app(live, None))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/kpi") as r:
                assert r.status == 503
                assert "--dsn" in await r.text()
            async with http.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 200
                assert '<script src="/bureau.js">' in await r.text()
    finally:
        await runner.cleanup()


def test_the_city_commands_migrate_roll_up_and_check_the_bridge_options(
    shipped: dict[tuple[str, dt.date], list[LogRow]], city_dsn: str
) -> None:
    from click.testing import CliRunner

    from hallqctl.cli import main

    from .citydb import ADMIN_DSN, dsn_with

    psycopg = psycopg_module()
    fresh = f"hallq_test_cli_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{fresh}"')
    try:
        runner = CliRunner()
        first = runner.invoke(main, ["city", "migrate", "--dsn", dsn_with(ADMIN_DSN, dbname=fresh)])
        assert first.exit_code == 0, first.output
        assert "applied 0001_events" in first.output
        assert "applied 0002_kpi_hourly" in first.output
        assert "applied 0003_hall_roles" in first.output
        again = runner.invoke(
            main, ["city", "migrate"], env={"HALLQ_CITY_DSN": dsn_with(ADMIN_DSN, dbname=fresh)}
        )
        assert again.exit_code == 0
        assert "current" in again.output
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
    role = f"hall_cli_{int(time.time() * 1000) % 10**9}"  # roles are the server's
    added = CliRunner().invoke(
        main, ["city", "add-hall", "--dsn", city_dsn, "east", "--role", role]
    )
    try:
        assert added.exit_code == 0, added.output
        assert f"made role {role}: it may ship hall east only" in added.output
        bad = CliRunner().invoke(main, ["city", "add-hall", "--dsn", city_dsn, "East Hall"])
        assert bad.exit_code == 2
        assert "hall id 'East Hall' is not a valid id" in bad.output
    finally:
        with psycopg.connect(city_dsn, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    rolled = CliRunner().invoke(main, ["city", "rollup", "--dsn", city_dsn, "--day", "2026-03-16"])
    assert rolled.exit_code == 0
    assert rolled.output.startswith("2026-03-16: ")
    assert int(rolled.output.split(": ")[1].split()[0]) > 0

    hall = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"
    bad = CliRunner().invoke(
        main,
        ["bridge", "--config", str(hall), "--city", "c1", "--cafile", "ca.pem"],
        env={"HALLQ_CITY_BRIDGE_PASSWORD": "s3cret"},
    )
    assert bad.exit_code == 2
    assert "--city 'c1': give each city node as host:port" in bad.output
    assert "s3cret" not in bad.output
    missing = CliRunner().invoke(
        main,
        ["bridge", "--config", str(hall), "--city", "c1:8883", "--cafile", "ca.pem"],
        env={"HALLQ_CITY_BRIDGE_PASSWORD": ""},
    )
    assert missing.exit_code == 2
    assert "password" in missing.output


CITY_FILE = """
[[halls]]
id = "east"
name = "东区办税服务厅"
district = "东区"
grid = [2, 0]

[[halls]]
id = "west"
name = "西区办税服务厅"
grid = [0, 1]
"""


async def _events(response: aiohttp.ClientResponse) -> Any:
    """The stream's ``city`` events, decoded, as they come."""
    async for line in response.content:
        if line.startswith(b"data: "):
            yield json.loads(line[6:])


async def test_the_dashboard_pushes_each_change_with_the_halls_places(tmp_path: Path) -> None:
    (tmp_path / "city.toml").write_text(CITY_FILE, encoding="utf-8")
    places = load_city_map(tmp_path / "city.toml")
    live = LiveCity()
    port = free_port()
    runner = web.AppRunner(make_app(live, None, places))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/api/stream") as r,
        ):
            events = _events(r)
            first = await asyncio.wait_for(anext(events), 10)
            # both halls are on the map before either has said anything
            assert {h["hall"]: h["grid"] for h in first["halls"]} == {
                "east": [2, 0],
                "west": [0, 1],
            }
            assert all(h["updated"] is None for h in first["halls"])
            live.apply(HallTopics("east").queue_state("invoice"), queue_msg(1, "invoice", 7, 3.0))
            pushed = await asyncio.wait_for(anext(events), 10)  # pushed, not polled
            east = next(h for h in pushed["halls"] if h["hall"] == "east")
            assert east["waiting"] == 7
            assert east["name"] == "东区办税服务厅"
            assert pushed["least"]["invoice"][0]["hall"] == "east"
    finally:
        await runner.cleanup()


def test_a_bad_city_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "city.toml"
    path.write_text(CITY_FILE.replace("[0, 1]", '"left"'), encoding="utf-8")
    with pytest.raises(CityMapError, match=r"city.toml: halls\[1\]\.grid"):
        load_city_map(path)
    path.write_text(CITY_FILE.replace('id = "west"', 'id = "east"'), encoding="utf-8")
    with pytest.raises(CityMapError, match="'east' is listed twice"):
        load_city_map(path)


async def test_with_users_the_dashboard_needs_a_login(tmp_path: Path) -> None:
    """The supervisor desk's sessions and lockout (coordinator.web.auth), on the bureau,
    whose users file `hallq user add --users-file` writes (there is no hall file)."""
    from click.testing import CliRunner

    from hallqctl.cli import main as cli

    users = tmp_path / "bureau.users.toml"
    add = ["user", "add", "analyst", "--role", "viewer", "--password-stdin"]
    runner_cli = CliRunner()
    done = runner_cli.invoke(cli, [*add, "--users-file", str(users)], input="long enough pw\n")
    assert done.exit_code == 0, done.output
    neither = runner_cli.invoke(cli, add, input="long enough pw\n")
    assert neither.exit_code != 0
    assert "give --config (a hall's desk users) or --users-file" in neither.output
    listed = runner_cli.invoke(cli, ["user", "list", "--users-file", str(users)])
    assert listed.output.split() == ["analyst", "viewer", str(users)]
    live = LiveCity()
    port = free_port()
    runner = web.AppRunner(make_app(live, None, None, users))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{base}/", allow_redirects=False) as r:
                assert r.status == 302
                assert r.headers["Location"] == "/login"
            for path in ("/api/halls", "/api/stream", "/bureau.js", "/api/comfort.csv"):
                async with http.get(f"{base}{path}") as r:
                    assert r.status == 401, path
            form = {"user": "analyst", "password": "wrong password"}
            async with http.post(f"{base}/login", data=form) as r:
                assert r.status == 401
            async with http.post(
                f"{base}/login", data=form, headers={"Origin": "http://evil.example"}
            ) as r:
                assert r.status == 403
            form["password"] = "long enough pw"
            async with http.post(f"{base}/login", data=form) as r:
                assert r.status == 200  # redirected to the dashboard
                assert "hallq bureau" in await r.text()
            async with http.get(f"{base}/api/halls") as r:
                assert r.status == 200
            async with http.post(f"{base}/logout") as r:
                assert r.url.path == "/login"
            async with http.get(f"{base}/api/halls") as r:
                assert r.status == 401
            form["password"] = "wrong again"
            statuses = []
            for _ in range(6):
                async with http.post(f"{base}/login", data=form) as r:
                    statuses.append(r.status)
            assert statuses[-1] == 429  # locked out, as at the desk
    finally:
        await runner.cleanup()


async def test_the_dashboard_page_draws_the_map_and_follows_the_city_live(
    tmp_path: Path,
) -> None:
    from .test_web_browser import CHROMIUM, FLAGS, WAIT_MS, Shots, _playwright

    async_playwright = _playwright()
    shots = Shots()
    (tmp_path / "city.toml").write_text(CITY_FILE, encoding="utf-8")
    live = LiveCity()
    live.apply(HallTopics("west").queue_state("invoice"), queue_msg(1, "invoice", 150, 40.0))
    live.apply(HallTopics("north").queue_state("invoice"), queue_msg(1, "invoice", 30, 9.0))
    port = free_port()
    runner = web.AppRunner(make_app(live, None, load_city_map(tmp_path / "city.toml")))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                page = await browser.new_page(viewport={"width": 900, "height": 700})
                page.set_default_timeout(WAIT_MS)
                await page.goto(f"http://127.0.0.1:{port}/")
                await page.wait_for_selector('#map .hall.busy[data-hall="west"]')
                # placed by the city file's cells; a hall not in it goes below the map
                box_e = await page.locator('#map [data-hall="east"]').bounding_box()
                box_w = await page.locator('#map [data-hall="west"]').bounding_box()
                assert box_e is not None
                assert box_w is not None
                assert box_e["x"] > box_w["x"]
                assert box_e["y"] < box_w["y"]
                assert await page.locator('#unplaced [data-hall="north"]').count() == 1
                live.apply(
                    HallTopics("west").queue_state("invoice"), queue_msg(2, "invoice", 3, 1.0)
                )
                await page.wait_for_selector('#map .hall.quiet[data-hall="west"]')  # pushed
                assert (
                    "西区办税服务厅 (1 min, 3 waiting)" in await page.locator("#least").inner_text()
                )
                await shots.take(page, "bureau-map")
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
