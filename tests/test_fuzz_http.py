"""Fuzz of the coordinator's HTTP API from the OpenAPI document it serves (schemathesis).

A real coordinator process (its own event loop, web server and broker session) on a real
Mosquitto; schemathesis reads ``/api/openapi.json`` from it and generates, for every
operation, requests that fit the document and requests that do not. No answer may be a
5xx; every answer must fit the document where it describes one (status code, content
type, body schema); a rejected request (4xx) must leave the hall as it was: the event log,
the bookings and what ``/api/hall`` shows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Err, Ok

from .conftest import Mosquitto, free_port
from .fuzzing import SEED, TIMEOUT, count, report
from .halls import small_hall_text
from .test_web_helpers import ID_HASH_KEY, PASSWORD

pytestmark = [pytest.mark.broker, TIMEOUT]

# The SSE stream never ends, so a generated request would only time out; it takes no input
# and tests/test_web_stream.py covers it.
SKIP = {"GET /api/stream"}


@pytest.fixture
def coordinator_url(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    config = tmp_path / "hall.toml"
    # real-name booking on (an ID hash key), and no per-address limit to hide the rest
    config.write_text(
        small_hall_text(
            mosquitto.url,
            str(tmp_path / "state"),
            all_day=True,
            http_port=port,
            appointment_capacity=2,
            appointment_per_address_hour=10_000,
        )
        + f'\n[security]\nid_hash_key = "{ID_HASH_KEY}"\n'
    )
    log_path = tmp_path / "log.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALLQ_")}
    env["HALLQ_SUPERVISOR_PASSWORD"] = PASSWORD  # the desk's first supervisor
    with (tmp_path / "coordinator.log").open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hallqctl.cli",
                "coordinator",
                "--config",
                str(config),
                "--log",
                str(log_path),
                "--dispatch",
                "pure",
            ],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # up once the health endpoint says the broker session is connected
            try:
                if requests.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (tmp_path / "coordinator.log").read_text()
            assert time.monotonic() < deadline, "the coordinator did not come up"
            time.sleep(0.05)
        yield url, log_path
    finally:
        proc.terminate()
        proc.wait(10)
    log = (tmp_path / "coordinator.log").read_text()
    assert "Traceback" not in log, log[-5000:]


# stamped per response, or moving with the clock (wait estimates are refreshed by a timer);
# "rev" is the event log's sequence, compared on its own
VOLATILE = {"now", "ts", "id", "oldest_wait_s", "eta_min", "wait", "rev"}


def _steady(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _steady(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_steady(v) for v in doc]
    return doc


# What the document promises. Not positive_data_acceptance: a string the schema allows may
# still name no service of this hall, and 400 is the right answer to that.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


def desk_login(url: str) -> dict[str, str]:
    """A supervisor's session, as a script logs in: the cookie and the CSRF token."""
    r = requests.post(
        f"{url}/api/login", json={"user": "supervisor", "password": PASSWORD}, timeout=30
    )
    assert r.status_code == 200, r.text
    return {
        "Cookie": f"hallq_session={r.cookies['hallq_session']}",
        "X-CSRF-Token": r.json()["csrf"],
    }


def hall_state(url: str, log_path: Path, auth: dict[str, str]) -> tuple[int, str]:
    """What a request could change: the event log (its last entry), the hall as served,
    the bookings."""
    with sqlite3.connect(f"file:{log_path}?mode=ro", uri=True) as db:
        last = db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0]
    hall = _steady(requests.get(f"{url}/api/hall", timeout=10).json())
    bookings = requests.get(f"{url}/api/supervisor/appointments", headers=auth, timeout=10).json()
    return int(last), json.dumps([hall, bookings], sort_keys=True)


def logged_since(log_path: Path, seq: int) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{log_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT result FROM entries WHERE seq > ?", (seq,)).fetchall()
    return [json.loads(r[0]) if r[0] else {} for r in rows]


class ApiFuzz:
    """One coordinator under fuzz: sends a generated request, checks what came back."""

    def __init__(self, url: str, log_path: Path) -> None:
        self.url, self.log_path = url, log_path
        self.http = requests.Session()
        self.statuses: Counter[str] = Counter()
        self.checked: Counter[str] = Counter()
        # the hall's state, while no accepted request may have changed it
        self.known: tuple[int, str] | None = None
        self.request_s = self.state_s = 0.0
        # one session for the run; /api/logout is sent without it (no "supervisor" in its
        # path), so generated requests cannot end it
        self.auth = desk_login(url)

    def send(self, label: str, case: Any, with_auth: bool) -> None:
        before = self.known or hall_state(self.url, self.log_path, self.auth)
        self.known = before
        headers = self.auth if with_auth and "supervisor" in label else {}
        started = time.perf_counter()
        response = case.call(base_url=self.url, session=self.http, headers=headers, timeout=10)
        self.request_s += time.perf_counter() - started
        self.statuses[f"{response.status_code // 100}xx"] += 1
        self.checked[label] += 1
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
        # A negative case may be negative only by leaving out the credentials, which this
        # run then adds; what is left of it (an unknown query parameter) is fine to ignore.
        case.validate_response(response, checks=CHECKS if not headers else CHECKS[:-1])
        if not 400 <= response.status_code < 500:
            self.known = None  # it may have changed the hall, as it was allowed to
            return
        started = time.perf_counter()
        after = hall_state(self.url, self.log_path, self.auth)
        self.state_s += time.perf_counter() - started
        assert after[1] == before[1], case.as_curl_command()
        if response.status_code == 409 and after[0] != before[0]:
            # the engine refused a well-formed command: the log keeps the refusal (as for
            # one from a device), and nothing else
            refused = logged_since(self.log_path, before[0])
            assert all(r.get("ok") is False for r in refused), refused
            self.known = after
        else:
            assert after[0] == before[0], case.as_curl_command()

    def operation(self, op: Any, mode: GenerationMode, examples: int) -> None:
        label = f"{op.method.upper()} {op.path}"

        @seed(SEED)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode), with_auth=st.booleans())
        def run(case: Any, with_auth: bool) -> None:
            self.send(label, case, with_auth)

        try:
            run()
        except Unsatisfiable:
            # no input to get wrong (GET /api/hall): nothing negative to send
            assert mode is GenerationMode.NEGATIVE, label


def test_fuzz_http_api_from_its_openapi(coordinator_url: tuple[str, Path]) -> None:
    url, log_path = coordinator_url
    schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
    parsed = list(schema.get_all_operations())
    operations = [op.ok() for op in parsed if isinstance(op, Ok)]
    assert len(operations) == len(parsed), [op.err() for op in parsed if isinstance(op, Err)]
    labels = {f"{o.method.upper()} {o.path}" for o in operations} - SKIP
    per_operation = count(6, 400)  # CI: ~300 requests (10 took ~25 s of CI's 2 cores)
    fuzz = ApiFuzz(url, log_path)
    with report("http-openapi", {"operations": len(labels)}) as figures:
        for op in operations:
            if f"{op.method.upper()} {op.path}" in labels:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    fuzz.operation(op, mode, per_operation)
        figures.update(
            requests=sum(fuzz.statuses.values()),
            statuses=dict(fuzz.statuses),
            per_operation_and_mode=per_operation,
            request_seconds=round(fuzz.request_s, 1),
            state_check_seconds=round(fuzz.state_s, 1),
        )
    assert set(fuzz.checked) == labels
