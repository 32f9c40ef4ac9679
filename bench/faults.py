"""Fault suite: the hall under load while the coordinator, the broker or the disk fail.

A real Mosquitto, the real coordinator process (``hallq coordinator``) and the real edge
agents in this process (``DispenserAgent`` without a printer, ``WindowAgent`` without pads:
everything above the serial bytes) on the seed hall (``examples/liwan.toml``, moved to a
time zone where it is midday, open all day). Dispensers press keys, windows call and finish;
meanwhile one fault is injected again and again:

- ``coordinator-kill``: SIGKILL the coordinator, restart it 0.3 s later (systemd's RestartSec);
- ``broker-restart``: stop Mosquitto (SIGTERM) and start it again;
- ``broker-kill``: SIGKILL Mosquitto (what it had not saved is gone) and start it again;
- ``disk-full``: the state directory is a small tmpfs (in a private mount namespace, via
  ``unshare``) filled to the last byte, then freed;
- ``read-only``: the coordinator dies and comes back on a state directory mounted
  read-only (an SD card the kernel remounted read-only), which becomes writable later;
- ``city-link-cut``: the hall's link to the city goes (the city bridge, ``hallq bridge``,
  to the city broker and the shipper to the city's PostgreSQL; ``bench/faults_city.py``)
  and comes back.

Each run reports, after the load stops and the outboxes are empty:

- lost: printed tickets missing from the coordinator's log;
- duplicated: a number printed twice, or a ticket called twice;
- ghost: tickets in the queue that no dispenser printed (not voided); and every ticket
  whose key press the dispenser issued offline instead (its reply was lost), called
  before that replay came, unless the log shows the replay withdrew its call (its
  result's ``withdrawn``); those are counted as withdrawn (no failure: the engine's fix);
- stale_applied: commands applied after their sender's deadline (a window command after
  ``edge.command_timeout_s``; an online issue after that deadline rounded up to whole
  seconds -- MQTT 5 expiry counts seconds -- and not voided by the dispenser's replay);
- not_converged: retained window/queue/board views on the broker that differ from the state
  rebuilt from the log;
- recover_s: for each fault, from its end (process or disk back) to the next ticket issued
  online; max and median.

For ``city-link-cut`` also, once the link is back and the load stopped: city_lost (log
entries not in the city database), city_duplicated (entries there twice) and
city_not_converged (window and queue summaries the city holds that differ from the
hall's); city_catchup_s: from each restore until the city has all the hall had then.

All of these counts must be 0. Usage (``--json`` prints one line of results last;
``--jobs N`` runs N scenarios at once, each in a process with its own broker, coordinator
and state directory; ``HALLQ_FAULTS_KEEP=DIR`` keeps each run's files there: the
coordinator's log, the agents' log ``agents.log``, the event log and the agents' state):

    python bench/faults.py --scenario all --faults 20 --every 3 --json   # the long run
    python bench/faults.py --scenario all --faults 2 --every 2 --hold 1 --jobs 3   # CI
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiomqtt

from coordinator.dispatch import load_core
from coordinator.eventlog import EventLog
from coordinator.hallqueue import HallQueue
from edge.dispenser import DispenserAgent, Issued
from edge.leases import LeaseBook
from edge.window import WindowAgent
from hallq import messages as m
from hallq.bus import Session
from hallq.config import HallConfig, parse_config
from hallq.topics import HallTopics, parse
from hallqctl.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    # first: the longest (a city to start, catch-ups to wait for), so with --jobs it runs
    # beside the others; in `all` since the city bridge left the hall broker (BENCHMARKS.md)
    "city-link-cut",
    "coordinator-kill",
    "broker-restart",
    "broker-kill",
    "disk-full",
    "read-only",
)
APART: tuple[str, ...] = ()  # scenarios run only by name
NEEDS_MOUNTS = {"disk-full", "read-only"}
WINDOWS_DRIVEN = 12
TMPFS_SIZE = "48m"


def midday_zone() -> str:
    """An Etc/GMT zone where it is about noon now, so the hall is open and no day ends."""
    offset = (12 - dt.datetime.now(dt.UTC).hour + 12) % 24 - 12  # hours east of UTC
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def hall_text(url: str, state: Path) -> str:
    text = (ROOT / "examples" / "liwan.toml").read_text(encoding="utf-8")
    text = text.replace("http_port = 8080", "http_port = 0")
    text = re.sub(r'^timezone = ".*"', f'timezone = "{midday_zone()}"', text, flags=re.M)
    text = re.sub(r'^reset_time = ".*"', 'reset_time = "23:59"', text, flags=re.M)
    text = re.sub(r"^open_hours = .*$", 'open_hours = [["00:00", "23:59"]]', text, flags=re.M)
    text = re.sub(r"^hours = .*$", "", text, flags=re.M)
    text = re.sub(r"^daily_cap = .*$", "", text, flags=re.M)
    # one generator plays every clerk, faster than any: no call is held for its holder
    text = re.sub(r"(?m)^call_hold_s = .*$", "call_hold_s = 0", text)
    # ...and each kiosk stands for a crowd, pressing faster than one person may
    unpaced = "\n[security]\nissue_rate_per_min = 100000\nissue_burst = 100000\n"
    return text + f'\n[broker]\nurl = "{url}"\n\n[runtime]\nstate_dir = "{state}"\n' + unpaced


def fill(path: Path) -> None:
    """Fill the file system holding ``path`` to the last byte (a real ENOSPC)."""
    with contextlib.suppress(OSError), path.open("wb") as f:
        while True:
            f.write(b"\0" * (1 << 20))
    with contextlib.suppress(OSError), path.open("ab") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def remount(state: Path, mode: str, patience_s: float = 5.0) -> None:
    """``mount -o remount,bind,MODE``, tried again while the mount is busy: a child the
    killed coordinator had forked (a checkpoint, a wait estimate) still holds the log
    open for writing until the kernel has ended it too, just after its parent (once, in
    CI, with three scenarios at once after the test suite, the first try failed so)."""
    deadline = time.monotonic() + patience_s
    while True:
        cmd = ("mount", "-o", f"remount,bind,{mode}", str(state))
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
        time.sleep(0.05)


class Hall:
    """Broker, coordinator process and agents of one run."""

    def __init__(self, work: Path, scenario: str, seed: int) -> None:
        self.work = work
        self.scenario = scenario
        self.rng = random.Random(seed)
        (work / "broker").mkdir(parents=True)
        self.broker = Mosquitto(work / "broker")
        self.state = work / "state"
        self.state.mkdir()
        if scenario in NEEDS_MOUNTS:
            sh("mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(self.state))
            sh("mount", "--bind", str(self.state), str(self.state))
        self.config = work / "hall.toml"
        self.event_log = self.state / "events.sqlite"  # (named after the hall once parsed)
        self.proc: subprocess.Popen[bytes] | None = None
        self.issued: list[Issued] = []
        self.sent: dict[str, tuple[float, float]] = {}  # command id -> (sent at, deadline)
        self.recoveries: list[float] = []
        self.stopping = False
        self.stopped = asyncio.Event()  # the load stops at once, not after its next pause
        self.restarts = 0
        self.agents: list[Any] = []
        self.city: Any = None  # faults_city.CityLink, for city-link-cut
        self.sessions: list[Session] = []
        self.phases: dict[str, float] = {}  # phase -> seconds it took (where the time goes)
        self._phase_start = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round(now - self._phase_start, 2)
        self._phase_start = now

    # --- processes ---------------------------------------------------------------------

    def start_coordinator(self) -> None:
        with (self.work / "coordinator.log").open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hallqctl.cli", "coordinator", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def kill_coordinator(self) -> None:
        """SIGKILL; keep_coordinator starts it again (like systemd), unless ``hold``."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    async def keep_coordinator(self) -> None:
        """What systemd does: a coordinator that exited is started again after 0.3 s."""
        while not self.stopping:
            if self.proc is not None and self.proc.poll() is not None:
                self.restarts += 1
                await asyncio.sleep(0.3)
                if not self.stopping:
                    self.start_coordinator()
            await asyncio.sleep(0.05)

    # --- devices -----------------------------------------------------------------------

    def _session(self, cfg: HallConfig, role: str, client: str) -> Session:
        session = Session(
            cfg.broker,
            hall=cfg.hall.id,
            role=role,
            client_id=client,
            state_dir=self.work / "edge" / client,
            drain_per_s=cfg.security.client_rate_per_s / 2,  # as edge.agent.make_session
        )
        request = session.request

        async def recorded(topic: str, message: m.Message, *, timeout: float) -> Any:  # noqa: ASYNC109  test helper: each test states its bound
            self.sent[message.id] = (time.time(), timeout)
            return await request(topic, message, timeout=timeout)

        session.request = recorded  # type: ignore[method-assign]
        self.sessions.append(session)
        return session

    async def pause(self, rate: float) -> bool:
        """A random pause between actions; False when the load stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.rng.expovariate(rate)):
                await self.stopped.wait()
        return not self.stopping

    async def press_keys(self, agent: DispenserAgent, rate: float) -> None:
        while await self.pause(rate):
            self.issued.append(await agent.issue(self.rng.choice(agent.services)))

    async def work_window(self, agent: WindowAgent, window: int, rate: float) -> None:
        while await self.pause(rate):
            action: Any = (
                m.Finish(window=window, action="finish")
                if self.rng.random() < 0.3
                else m.WindowAction(window=window, action="call")
            )
            await agent.send(window, action)

    async def probe_online(self, agent: DispenserAgent, since: float) -> None:
        """Time from a fault's end to the next ticket issued online."""
        while True:
            result = await agent.issue(agent.services[0])
            self.issued.append(result)
            if os.environ.get("HALLQ_FAULTS_DEBUG"):
                print(f"probe {time.perf_counter() - since:.2f} {result}", file=sys.stderr)
            if result.online and result.number is not None:
                self.recoveries.append(time.perf_counter() - since)
                return
            await asyncio.sleep(0.05)

    # --- faults ------------------------------------------------------------------------

    async def fault(self, probe: DispenserAgent, hold: float) -> None:
        s = self.scenario
        if s == "coordinator-kill":
            self.kill_coordinator()  # keep_coordinator starts it again
        elif s in ("broker-restart", "broker-kill"):
            self.broker.stop() if s == "broker-restart" else self.broker.kill()
            await asyncio.sleep(hold)
            self.broker.start()
        elif s == "disk-full":
            filler = self.state / "filler"
            await asyncio.to_thread(fill, filler)  # (the agents' loop keeps running)
            await asyncio.sleep(hold)
            filler.unlink()
        elif s == "read-only":
            self.kill_coordinator()
            remount(self.state, "ro")
            await asyncio.sleep(hold)
            remount(self.state, "rw")
        elif s == "city-link-cut":
            self.city.cut()
            await asyncio.sleep(hold)
            await self.city.restore(self.event_log)
        await self.probe_online(probe, time.perf_counter())


async def coordinator_online(cfg: HallConfig, timeout: float = 60) -> None:  # noqa: ASYNC109  bench helper: its bound
    """Wait for the coordinator's retained presence "online" (its routes are subscribed
    before it announces itself), so no lease request is spent on a coordinator starting."""
    from hallq.messages import decode

    topic = HallTopics(cfg.hall.id).status("coordinator", cfg.coordinator.client_id)
    async with (
        asyncio.timeout(timeout),
        aiomqtt.Client(cfg.broker.host, cfg.broker.port, identifier="fault-starter") as c,
    ):
        await c.subscribe(topic, 1)
        async for message in c.messages:
            if decode(m.Presence, bytes(message.payload)).state == "online":
                return


async def retained_views(cfg: HallConfig, quiet: float = 1.5) -> dict[str, Any]:
    """What a board or pad connecting now would be shown (the broker's retained state):
    every window, queue and board topic and 0.3 s more for late changes, or ``quiet``
    seconds in all if some never come."""
    from hallq.messages import decode

    t = HallTopics(cfg.hall.id)
    wanted = len(cfg.windows) + len(cfg.services) + 1
    seen: dict[str, Any] = {}
    async with aiomqtt.Client(cfg.broker.host, cfg.broker.port, identifier="fault-viewer") as c:
        await c.subscribe([(t.all_state(), 1)])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(quiet) as window:
                async for message in c.messages:
                    topic = message.topic.value
                    parts = parse(topic)
                    if parts.action in ("window", "queue", "board"):
                        model = {
                            "window": m.WindowState,
                            "queue": m.QueueState,
                            "board": m.BoardState,
                        }[parts.action]
                        seen[topic] = decode(model, bytes(message.payload))
                        if len(seen) == wanted:  # all there: a short quiet for late changes
                            window.reschedule(asyncio.get_running_loop().time() + 0.3)
    return seen


def expected_views(cfg: HallConfig, q: HallQueue) -> dict[str, Any]:
    t, e, now = HallTopics(cfg.hall.id), q.engine, time.time()
    views: dict[str, Any] = {t.window_state(n): e.window_state(n, 0) for n in e.windows}
    views |= {t.queue_state(c): e.queue_state(c, 0, now) for c in e.services}
    views[t.board_state()] = e.board_state(0)
    return views


def same(a: Any, b: Any) -> bool:
    if isinstance(a, m.WindowState):  # (withdrawn: what the pad says of a voided call)
        return (a.status, a.ticket, a.withdrawn) == (b.status, b.ticket, b.withdrawn)
    if isinstance(a, m.QueueState):
        return (a.waiting, a.next) == (b.waiting, b.next)
    return (a.waiting, [c.ticket for c in a.calls]) == (b.waiting, [c.ticket for c in b.calls])


async def run(
    scenario: str, faults: int, every: float, hold: float, seed: int, work: Path
) -> dict[str, Any]:
    hall = Hall(work, scenario, seed)
    handler = logging.FileHandler(work / "agents.log")  # the agents' side, for tracing
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.getLogger("hallq").addHandler(handler)
    logging.getLogger("hallq").setLevel(logging.INFO)
    try:
        return await _run(hall, faults, every, hold)
    finally:
        hall.stopping = True
        if hall.proc is not None and hall.proc.poll() is None:
            hall.proc.kill()
            hall.proc.wait(10)
        if hall.city is not None:
            await hall.city.close()
        hall.broker.kill()
        logging.getLogger("hallq").removeHandler(handler)
        handler.close()


async def _run(hall: Hall, faults: int, every: float, hold: float) -> dict[str, Any]:
    work = hall.work
    hall.broker.start()  # first: it may move off a port taken since it was picked
    hall.config.write_text(hall_text(hall.broker.url, hall.state), encoding="utf-8")
    cfg = parse_config(hall.config.read_text(encoding="utf-8"), str(hall.config))
    hall.event_log = hall.state / f"events-{cfg.hall.id}.sqlite"
    if hall.scenario == "city-link-cut":
        from faults_city import CityLink

        hall.city = CityLink(work, cfg.hall.id)
        await hall.city.start()
        hall.city.hall_port = hall.broker.port
        hall.mark("city")
    hall.start_coordinator()
    if hall.city is not None:
        hall.city.start_shipper(hall.config)
        hall.city.start_bridge(hall.config)
    hall.mark("broker")
    keeper = asyncio.create_task(hall.keep_coordinator())
    dispensers = [a for a in cfg.agents if a.role == "dispenser"]
    pads = [a for a in cfg.agents if a.role == "window"]
    tasks: list[asyncio.Task[None]] = []
    async with contextlib.AsyncExitStack() as stack:
        d_agents: list[DispenserAgent] = []
        for agent in dispensers:
            session = await stack.enter_async_context(hall._session(cfg, "dispenser", agent.id))
            leases = LeaseBook(work / "edge" / agent.id / "leases.sqlite")
            stack.callback(leases.close)
            d = DispenserAgent(cfg, agent, session, leases, None)
            await d.start()
            d_agents.append(d)
        windows: list[tuple[WindowAgent, int]] = []
        for agent in pads:
            session = await stack.enter_async_context(hall._session(cfg, "window", agent.id))
            w = WindowAgent(cfg, agent, session, {})
            await w.start()
            windows += [(w, n) for n in w.windows]
        windows = windows[:WINDOWS_DRIVEN]
        for s in hall.sessions:
            await s.wait_connected(30)
        await coordinator_online(cfg)
        hall.mark("coordinator")
        async with asyncio.timeout(90):  # leases in hand before the first fault
            while not all(
                d.leases.remaining(d.day().isoformat(), c) for d in d_agents for c in d.services
            ):
                await asyncio.gather(*(d.top_up_leases() for d in d_agents))
        hall.mark("leases")
        tasks += [asyncio.create_task(hall.press_keys(d, 3.0)) for d in d_agents[1:]]
        tasks += [asyncio.create_task(hall.work_window(w, n, 0.5)) for w, n in windows]
        for _ in range(faults):
            await asyncio.sleep(every)
            await hall.fault(d_agents[0], hold)
        hall.mark("faults")
        hall.stopping = True
        hall.stopped.set()
        await asyncio.gather(*tasks)
        for s in hall.sessions:
            await s.wait_outbox_empty(120)
        hall.mark("outboxes")
        with contextlib.suppress(TimeoutError):  # what is still unanswered then is lost
            async with asyncio.timeout(60):
                await asyncio.gather(*(d.replays_answered() for d in d_agents))
        for d in d_agents:
            await d.close()
        hall.mark("replays")
        await hall.probe_online(d_agents[0], time.perf_counter())
        await asyncio.sleep(1.0)  # the last outcome's publishes reach the broker
        shown = await retained_views(cfg)
        hall.mark("views")
    await asyncio.gather(keeper)
    assert hall.proc is not None
    hall.proc.send_signal(signal.SIGTERM)
    hall.proc.wait(30)
    copy = work / "final.sqlite"
    src = sqlite3.connect(hall.event_log)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    q = HallQueue(cfg, EventLog(copy), load_core("auto"))
    q.recover()
    hall.mark("log")
    result = verdict(cfg, hall, q, shown)
    if hall.city is not None:
        result |= await hall.city.verdict(copy, expected_views(cfg, q), same)
        hall.mark("city-caught-up")
        result["phases_s"] = hall.phases
    return result


def verdict(cfg: HallConfig, hall: Hall, q: HallQueue, shown: dict[str, Any]) -> dict[str, Any]:
    printed = Counter(i.number for i in hall.issued if i.number and i.printed)
    engine = q.engine
    known = set(engine.by_number)
    closed = {m.TicketState.VOIDED, m.TicketState.CANCELLED}
    ghosts = [t.number for t in engine.tickets if t.state not in closed and t.number not in printed]
    calls: Counter[str] = Counter()
    stale: list[str] = []
    request_of: dict[str, str] = {}  # number issued online -> its request's id
    first_call: dict[str, int] = {}  # number -> seq of its first call
    superseded: dict[str, int] = {}  # request id -> seq of the offline issue replacing it
    withdrew: dict[str, int] = {}  # number -> seq of the offline issue withdrawing its call
    with sqlite3.connect(q.log.path) as db:
        rows = db.execute(
            "SELECT seq, cmd_id, kind, at, payload, result FROM entries "
            "WHERE kind != 'day_open' ORDER BY seq"
        ).fetchall()
    for seq, cmd_id, kind, at, payload, result in rows:
        body, outcome = json.loads(payload), json.loads(result or "{}")
        if not outcome.get("ok"):
            continue
        if body.get("action") in ("call", "call_ticket") and outcome.get("ticket"):
            calls[outcome["ticket"]] += 1
            first_call.setdefault(outcome["ticket"], seq)
        if body.get("kind") == "issue" and (outcome.get("info") or {}).get("number"):
            if body.get("offline"):
                if late := body["offline"].get("supersedes"):
                    superseded[late] = seq
                if gone := outcome.get("withdrawn"):
                    withdrew[gone["ticket"]] = seq
            else:
                request_of[outcome["info"]["number"]] = cmd_id
        sent = hall.sent.get(cmd_id)
        if sent is None or body.get("offline") or body.get("kind") in ("void", "lease"):
            continue
        late_by = at - sent[0] - sent[1]
        if kind == "window" and late_by > 0:
            stale.append(f"{cmd_id} {body.get('action')} +{late_by:.2f}s")
        elif kind == "ticket" and at - sent[0] > -(-sent[1] // 1):
            number = (outcome.get("info") or {}).get("number")
            if number and engine.by_number[number].state is not m.TicketState.VOIDED:
                stale.append(f"{cmd_id} issue {number} +{late_by:.2f}s")
    # A ticket issued for a key press whose reply was lost (the broker went between the
    # issue and the reply; or the request was in transit past the dispenser's deadline),
    # and called before the dispenser's offline issue for the same press said so: the
    # coordinator could not know sooner, and the taxpayer holds the offline ticket. The
    # offline issue must have withdrawn that call (its logged result says so); one it did
    # not withdraw is a window's call of a number nobody holds: a ghost, whatever state
    # the ticket ended in.
    called_first = [
        n
        for n, req in request_of.items()
        if req in superseded and first_call.get(n, superseded[req]) < superseded[req]
    ]
    withdrawn = [n for n in called_first if withdrew.get(n) == superseded[request_of[n]]]
    ghosts += [n for n in called_first if n not in withdrawn and n not in ghosts]
    expected = expected_views(cfg, q)
    not_converged = sorted(
        topic
        for topic, view in expected.items()
        if topic not in shown or not same(shown[topic], view)
    )
    rec = hall.recoveries[:-1] or hall.recoveries
    lost = sorted(set(printed) - known)
    return {
        "scenario": hall.scenario,
        "faults": len(hall.recoveries) - 1,
        "printed": sum(printed.values()),
        "offline": sum(1 for i in hall.issued if i.number and not i.online),
        "lost": len(lost),
        "lost_numbers": lost[:10],
        "duplicated": sum(n - 1 for n in printed.values() if n > 1)
        + sum(n - 1 for n in calls.values() if n > 1),
        "ghost": len(ghosts),
        "ghost_numbers": ghosts[:10],
        "withdrawn": len(withdrawn),
        "withdrawn_numbers": withdrawn[:10],
        "stale_applied": len(stale),
        "stale_commands": stale[:5],
        "not_converged": len(not_converged),
        "not_converged_topics": not_converged[:5],
        "recover_max_s": round(max(rec), 3),
        "recover_median_s": round(statistics.median(rec), 3),
        "phases_s": hall.phases,
    }


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def in_namespace() -> bool:
    return os.environ.get("HALLQ_FAULTS_NS") == "1"


COUNTS = ("lost", "duplicated", "ghost", "stale_applied", "not_converged")
CITY_COUNTS = ("city_lost", "city_duplicated", "city_not_converged")


def summary(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"{result['scenario']:>16}: skipped: {result['skipped']}"
    text = (
        f"{result['scenario']:>16}: {result['faults']} faults, {result['printed']} printed "
        f"({result['offline']} offline); lost {result['lost']}, duplicated "
        f"{result['duplicated']}, ghost {result['ghost']}, stale applied "
        f"{result['stale_applied']}, views not converged {result['not_converged']}; "
        f"recovery max {result['recover_max_s']} s, median "
        f"{result['recover_median_s']} s"
    )
    if result.get("withdrawn"):
        text += f"; calls withdrawn (called before the loss was known) {result['withdrawn']}"
    if "city_lost" in result:
        text += (
            f"; city: {result['city_shipped']} entries shipped, lost {result['city_lost']}, "
            f"duplicated {result['city_duplicated']}, views not converged "
            f"{result['city_not_converged']}, caught up max {result['city_catchup_max_s']} s"
            f", median {result['city_catchup_median_s']} s"
        )
    return text


def run_one(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"hallq-faults-{scenario}-") as tmp:
        if keep := os.environ.get("HALLQ_FAULTS_KEEP"):  # look at the run's files after
            tmp = tempfile.mkdtemp(prefix=f"{scenario}-", dir=keep)
        work = Path(tmp)
        try:
            return asyncio.run(run(scenario, args.faults, args.every, args.hold, args.seed, work))
        except Exception as exc:
            if type(exc).__name__ != "CityUnavailable" or in_ci():
                raise
            return {"scenario": scenario, "skipped": str(exc)}  # CI has them all: fails there
        finally:
            state = work / "state"
            if scenario in NEEDS_MOUNTS:
                subprocess.run(["umount", "-l", str(state)], capture_output=True)
                subprocess.run(["umount", "-l", str(state)], capture_output=True)


def run_apart(chosen: tuple[str, ...], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each scenario in a process of its own (its own broker on a free port, coordinator
    and state directory), ``args.jobs`` at once; a run that crashed is reported as such."""
    options = ["--faults", str(args.faults), "--every", str(args.every)]
    options += ["--hold", str(args.hold), "--seed", str(args.seed), "--json"]
    results: list[dict[str, Any]] = []
    todo = list(chosen)
    running: list[tuple[str, subprocess.Popen[str]]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            scenario = todo.pop(0)
            command = [sys.executable, __file__, "--scenario", scenario, *options]
            running.append((scenario, subprocess.Popen(command, stdout=subprocess.PIPE, text=True)))
        finished = next(((s, p) for s, p in running if p.poll() is not None), None)
        if finished is None:  # (each writes two lines: the pipe never fills)
            time.sleep(0.1)
            continue
        running.remove(finished)
        scenario, proc = finished
        out, _ = proc.communicate()
        lines = out.strip().splitlines()
        try:
            results += json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            print(f"{scenario:>16}: crashed (exit {proc.returncode})", flush=True)
            results.append({"scenario": scenario, "crashed": True})
            continue
        print(summary(results[-1]), flush=True)
    results.sort(key=lambda r: chosen.index(r["scenario"]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", choices=("all", *SCENARIOS, *APART))
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--every", type=float, default=2.0, help="seconds of load between faults")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds an outage lasts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=1, help="scenarios run at once, each in its own process"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    if any(s in NEEDS_MOUNTS for s in chosen) and not in_namespace():
        if shutil.which("unshare") is None:
            print(
                "unshare not found: disk scenarios need a private mount namespace", file=sys.stderr
            )
            return 2
        env = {**os.environ, "HALLQ_FAULTS_NS": "1"}
        return subprocess.run(
            ["unshare", "-rm", "--propagation", "private", sys.executable, *sys.argv], env=env
        ).returncode
    if args.jobs > 1 and len(chosen) > 1:
        results = run_apart(chosen, args)
    else:
        results = []
        for scenario in chosen:
            results.append(run_one(scenario, args))
            print(summary(results[-1]), flush=True)
    bad = sum(1 for r in results if r.get("crashed")) + sum(
        r.get(k, 0) for r in results if "faults" in r for k in COUNTS + CITY_COUNTS
    )
    if args.json:
        print(json.dumps(results))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
