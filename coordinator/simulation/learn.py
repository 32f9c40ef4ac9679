"""Learn a hall's demand from its own event log, so a simulated day looks like that hall.

The seed figures in ``profile`` describe Liwan. A hall that has run hallq for a while has
better ones in its event log, and a supervisor trying a staffing policy should see it on
their own taxpayers::

    hallq simulate --config hall.toml --history /var/lib/hallq/hall-1.sqlite

What is learned, and from what:

* counter time per service -- a lognormal fitted by maximum likelihood to the log of
  (finish - start), where start is the ``start`` key press, or the call when staff never
  pressed it. The times come from replaying each logged business day through the real
  :class:`~coordinator.hallqueue.HallQueue`, exactly as recovery does, because a ticket's
  end is not always its own entry: calling the next number finishes the current one, and
  a transfer changes a ticket's service. Zero or negative times and times over
  ``max_counter_min`` (a window left open over lunch) are dropped and counted.
* the service mix -- issued tickets per service (the same tickets the comfort index
  counts: successful issues; leases, voids and refusals are not arrivals).
* the half-hour profile -- issued tickets per half hour (``forecast.history.arrival_counts``)
  divided by the minutes each half hour is open, once there are on average at least
  ``min_samples`` tickets per open half hour. The profile starts at the hall's first
  open half hour (or 09:00, the seed profile's start, if that is earlier); tickets issued
  before it (offline replays stamped earlier) are counted but cannot shape it.

A service with fewer than ``min_samples`` counter times keeps the seed's mean and shape.
Every fallback is in the result (and in ``render_learned``), because a supervisor must
not read a seed figure as their hall's own. The replay needs the hall file the log was
written under: commands it refuses differently from the log are counted as mismatches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

from rich.console import Group
from rich.table import Table
from rich.text import Text

from coordinator import hallqueue
from coordinator.dispatch import load_core
from coordinator.eventlog import Entry, EventLog, entry_of
from coordinator.forecast.history import arrival_counts, open_slots
from coordinator.simulation.profile import PROFILE_START, Demand
from hallq.config import HallConfig

__all__ = [
    "LearnError",
    "LearnedDemand",
    "ServiceFit",
    "learn_counter_times",
    "learn_demand",
    "render_learned",
]

MAX_COUNTER_MIN = 180.0
_COLUMNS = "seq, kind, cmd_id, day, at, source, payload, result"
_Row = tuple[Any, ...]


class LearnError(ValueError):
    """The history cannot be used at all; the message names the file and the reason."""


@dataclass(frozen=True)
class ServiceFit:
    """One service's counter time: fitted (``learned``) or the seed's, and on what evidence.

    ``mu`` and ``sigma`` are the lognormal's on seconds; ``mean_min`` and ``sigma_used`` are
    what the simulator draws with (for a learned service, ``mean_min = exp(mu + sigma²/2)``).
    """

    code: str
    learned: bool
    served: int
    dropped: int
    issued: int
    mean_min: float
    sigma_used: float
    mu: float | None = None
    sigma: float | None = None


@dataclass(frozen=True)
class LearnedDemand:
    """A :class:`Demand` for the simulator, and what in it came from the hall's history."""

    demand: Demand
    services: dict[str, ServiceFit]
    source: Path
    days: int
    issued: int
    mix_learned: bool
    profile_learned: bool
    since: dt.date | None = None
    min_samples: int = 30
    mean_daily: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def learned(self) -> list[str]:
        return [c for c, f in self.services.items() if f.learned]

    @property
    def fell_back(self) -> list[str]:
        return [c for c, f in self.services.items() if not f.learned]


def learn_demand(
    log_path: str | Path,
    cfg: HallConfig,
    *,
    since: dt.date | None = None,
    min_samples: int = 30,
    max_counter_min: float = MAX_COUNTER_MIN,
    core_kind: str = "auto",
) -> LearnedDemand:
    """The demand of the hall ``cfg`` as its event log at ``log_path`` shows it (business
    days from ``since`` on); seed figures wherever the log holds too little.

    Raises :class:`LearnError` when the file is missing, is not a hallq event log, or holds
    no issued ticket: there is then nothing to report as learned or as fallen back.
    """
    path = Path(log_path)
    codes = [s.code for s in cfg.services]
    seed = Demand.for_services(codes)
    db = _open(path)
    try:
        issued, unknown, days, times, dropped, trouble = _replay(
            db, cfg, load_core(core_kind), since, max_counter_min * 60.0
        )
        half_hours, first, outside = _profile(path, cfg, since, min_samples)
    except sqlite3.DatabaseError as exc:  # damaged pages, malformed JSON in a result
        raise LearnError(f"{path}: cannot be read as an event log ({exc})") from None
    finally:
        db.close()
    after = f" since {since}" if since else ""
    if not issued and not unknown:
        raise LearnError(
            f"{path}: no tickets were issued in this event log{after}; nothing to learn from"
        )
    notes = list(trouble)
    if unknown:
        notes.append(
            f"{sum(unknown.values())} ticket(s) of services not in this hall file "
            f"ignored: {', '.join(sorted(unknown))}"
        )

    fits: dict[str, ServiceFit] = {}
    for code in codes:
        sample = times.get(code, [])
        evidence = {"served": len(sample), "dropped": dropped[code], "issued": issued[code]}
        if len(sample) >= min_samples:
            mu, sigma = fit_lognormal(sample)
            fits[code] = ServiceFit(
                code,
                True,
                **evidence,
                mu=mu,
                sigma=sigma,
                mean_min=math.exp(mu + sigma * sigma / 2) / 60.0,
                sigma_used=sigma,
            )
        else:
            fits[code] = ServiceFit(
                code, False, **evidence, mean_min=seed.mean_min[code], sigma_used=seed.sigma
            )
    total = sum(issued[c] for c in codes)
    mix_learned = total >= min_samples
    mix = {c: issued[c] / total for c in codes} if mix_learned else dict(seed.mix)
    if outside:
        notes.append(
            f"{outside} ticket(s) issued before {first:%H:%M} cannot shape "
            "the half-hour profile, which starts there"
        )
    sigmas = {c: f.sigma_used for c, f in fits.items()}
    demand = Demand(
        mix=mix,
        mean_min={c: f.mean_min for c, f in fits.items()},
        sigma=seed.sigma,
        half_hours=half_hours or seed.half_hours,
        sigmas=sigmas,
        profile_start=first if half_hours else seed.profile_start,
    )
    return LearnedDemand(
        demand=demand,
        services=fits,
        source=path,
        days=days,
        issued=total,
        mix_learned=mix_learned,
        profile_learned=half_hours is not None,
        since=since,
        min_samples=min_samples,
        mean_daily=total / days if days else 0.0,
        notes=notes,
    )


def learn_counter_times(
    log_path: str | Path,
    cfg: HallConfig,
    *,
    since: dt.date | None = None,
    min_samples: int = 30,
    max_counter_min: float = MAX_COUNTER_MIN,
    core_kind: str = "auto",
    stop: threading.Event | None = None,
    cache: Path | None = None,
    run: Callable[[Callable[[], DaySums | None]], DaySums | None] | None = None,
) -> dict[str, tuple[float, float]]:
    """Only the counter times (lognormal ``(mu, sigma)`` on seconds) of the services with
    at least ``min_samples`` of them from ``since`` on: what the coordinator's wait
    estimates draw from. It runs beside a serving coordinator, so it costs little there:

    * a closed day's counter times never change, so each is replayed once: its sums (count,
      sum of logs, sum of squared logs per service: all a lognormal fit needs) are kept in
      ``cache`` (a JSON file, valid for one hall config and version, like a checkpoint)
      and only new days and the open one are replayed (a busy day is ~1 s of CPU);
    * only those days are read, by the log's day index, not the whole log;
    * it ends between two days once ``stop`` is set (the coordinator stopping);
    * ``run`` runs a day's replay, given it as a call (the coordinator's: in a forked
      child, as the day's rows are read here: a busy day's ~1 s of pure Python would
      hold the GIL its event loop needs); by default here.

    Raises :class:`LearnError` as :func:`learn_demand` does for a missing or foreign file."""
    path = Path(log_path)
    known = {s.code for s in cfg.services}
    core_cls = load_core(core_kind)
    fingerprint = hallqueue.config_fingerprint(cfg)
    kept = _read_sums(cache, fingerprint)
    fresh: dict[str, dict[str, list[float]]] = {}
    total: dict[str, list[float]] = {}
    db = _open(path)
    quiet = _ReplayMismatches()
    hallqueue.log.addFilter(quiet)
    try:
        days = [
            d
            for (d,) in db.execute(
                "SELECT DISTINCT day FROM entries WHERE day >= ? ORDER BY day",
                (since.isoformat() if since else "",),
            )
        ]
        for day in days:
            if stop is not None and stop.is_set():
                break
            sums = kept.get(day) if day != days[-1] else None  # the last may still be open
            if sums is None:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM entries WHERE day = ? ORDER BY seq", (day,)
                ).fetchall()
                replay = partial(_day_sums, cfg, core_cls, rows, max_counter_min)
                sums = replay() if run is None else run(replay)
                if sums is None:  # a damaged payload or result: that day is left out
                    continue
                if day != days[-1]:
                    fresh[day] = sums
            for code, (n, s1, s2) in sums.items():
                acc = total.setdefault(code, [0.0, 0.0, 0.0])
                acc[0], acc[1], acc[2] = acc[0] + n, acc[1] + s1, acc[2] + s2
    except sqlite3.DatabaseError as exc:
        raise LearnError(f"{path}: cannot be read as an event log ({exc})") from None
    finally:
        hallqueue.log.removeFilter(quiet)
        db.close()
    if cache is not None and fresh:
        first = since.isoformat() if since else ""
        _write_sums(cache, fingerprint, {d: v for d, v in {**kept, **fresh}.items() if d >= first})
    fits = {}
    for code, (n, s1, s2) in total.items():
        if code in known and n >= min_samples:
            mu = s1 / n
            fits[code] = (mu, math.sqrt(max(0.0, s2 / n - mu * mu)))
    return fits


def _read_sums(cache: Path | None, fingerprint: str) -> dict[str, dict[str, list[float]]]:
    """The kept per-day sums, or none when missing, damaged or for another config."""
    if cache is None:
        return {}
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("fingerprint") != fingerprint:
            return {}
        return {
            str(d): {str(c): [float(x) for x in v] for c, v in s.items()}
            for d, s in data["days"].items()
        }
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def _write_sums(cache: Path, fingerprint: str, days: dict[str, dict[str, list[float]]]) -> None:
    """Replace the kept sums at once (a rename); not written is only slower next time."""
    tmp = cache.with_name(cache.name + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "days": days}), encoding="utf-8")
        os.replace(tmp, cache)


def fit_lognormal(seconds: list[float]) -> tuple[float, float]:
    """Maximum-likelihood lognormal: the mean and the (divide-by-n) spread of the logs.

    Not the log of the mean: counter times are skewed, and that would put ``mu`` too high
    by ``sigma²/2``, the simulated median with it.
    """
    logs = [math.log(s) for s in seconds]
    mu = math.fsum(logs) / len(logs)
    return mu, math.sqrt(math.fsum((x - mu) ** 2 for x in logs) / len(logs))


# --- reading the log ------------------------------------------------------------------------


def _open(path: Path) -> sqlite3.Connection:
    """Read-only, so a running coordinator keeps writing (WAL lets readers in)."""
    if not path.exists():
        raise LearnError(f"{path}: no such file")
    if path.is_dir():
        raise LearnError(f"{path}: is a directory, not an event log")
    db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        count = db.execute("SELECT count(*) FROM entries").fetchone()[0]
        db.execute(f"SELECT {_COLUMNS} FROM entries LIMIT 0")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise LearnError(f"{path}: not a hallq event log ({exc})") from None
    if not count:
        db.close()
        raise LearnError(f"{path}: the event log is empty (no entries)")
    return db


def _business_days(
    db: sqlite3.Connection, since: dt.date | None
) -> Iterator[tuple[str, list[_Row]]]:
    """Each logged day as its ``day_open`` entry and what follows, one day in memory; only
    the days from ``since`` on are read."""
    day: str | None = None
    rows: list[_Row] = []
    first = 0
    if since is not None:  # days follow the log's order: start at the first entry of since
        found = db.execute(  # by the day index: min(seq) would walk the log from its start
            "SELECT seq FROM entries WHERE day >= ? ORDER BY day, seq LIMIT 1",
            (since.isoformat(),),
        ).fetchone()
        if found is None:
            return
        first = found[0]
    for row in db.execute(f"SELECT {_COLUMNS} FROM entries WHERE seq >= ? ORDER BY seq", (first,)):
        if row[1] == "day_open" and rows:
            if day is not None and (since is None or day >= since.isoformat()):
                yield day, rows
            rows = []
        if not rows:
            day = row[3]
        rows.append(row)
    if rows and day is not None and (since is None or day >= since.isoformat()):
        yield day, rows


def _replay(
    db: sqlite3.Connection,
    cfg: HallConfig,
    core_cls: type[Any],
    since: dt.date | None,
    max_s: float,
) -> tuple[Counter[str], Counter[str], int, dict[str, list[float]], Counter[str], list[str]]:
    """Issued tickets per service, counter times per service, and what could not be used."""
    known = {s.code for s in cfg.services}
    issued: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    times: dict[str, list[float]] = {}
    skipped: list[str] = []
    days = 0
    quiet = _ReplayMismatches()
    hallqueue.log.addFilter(quiet)
    try:
        for day, rows in _business_days(db, since):
            try:
                engine = _replay_day(cfg, core_cls, rows, quiet)
                day_issued = _issued(rows)
            except ValueError as exc:  # a damaged payload or result: that day only
                skipped.append(f"{day}: {exc}".splitlines()[0])
                continue
            days += 1
            for code, n in day_issued.items():
                (issued if code in known else unknown)[code] += n
            day_times, day_dropped = _counter_times(engine, max_s / 60.0)
            for code, sample in day_times.items():
                times.setdefault(code, []).extend(sample)
            dropped.update(day_dropped)
    finally:
        hallqueue.log.removeFilter(quiet)
    notes = []
    if skipped:
        notes.append(
            f"{len(skipped)} day(s) could not be replayed and were left out (first: {skipped[0]})"
        )
    if quiet.count:
        notes.append(
            f"{quiet.count} replayed command(s) came out differently from the log: "
            "is this the hall file the log was written under?"
        )
    return issued, unknown, days, times, dropped, notes


DaySums = dict[str, list[float]]  # service -> [count, sum of logs, sum of squared logs]


def _day_sums(
    cfg: HallConfig, core_cls: type[Any], rows: list[tuple[Any, ...]], max_counter_min: float
) -> DaySums | None:
    """One day's counter-time sums, replayed from its rows; None if the day is damaged."""
    try:
        times, _ = _counter_times(_replay_day(cfg, core_cls, rows), max_counter_min)
    except ValueError:
        return None
    return {
        code: [
            len(sample),
            math.fsum(math.log(x) for x in sample),
            math.fsum(math.log(x) ** 2 for x in sample),
        ]
        for code, sample in times.items()
    }


def _counter_times(engine: Any, max_min: float) -> tuple[dict[str, list[float]], Counter[str]]:
    """Seconds at the counter of each finished ticket of a replayed day, by service, and
    how many were dropped (zero or negative, or over ``max_min``: a window left open)."""
    times: dict[str, list[float]] = {}
    dropped: Counter[str] = Counter()
    for t in engine.tickets:
        if t.finished_at is None or t.called_at is None:
            continue
        took = t.finished_at - (t.started_at or t.called_at)
        if 0 < took <= max_min * 60.0:
            times.setdefault(t.service, []).append(took)
        else:
            dropped[t.service] += 1
    return times, dropped


def _replay_day(
    cfg: HallConfig, core_cls: type[Any], rows: list[_Row], tally: _ReplayMismatches | None = None
) -> Any:
    """One business day through ``HallQueue.recover``, reading the day's rows as its log:
    the state recovery would rebuild, with no second reading of what commands mean. No
    SQLite: the coordinator runs this in a forked child, which must not call into a
    library another thread of its parent may have been inside at the fork."""
    queue = hallqueue.HallQueue(cfg, cast(EventLog, _RowsLog(rows)), core_cls)
    queue.recover()
    if tally is not None:
        tally.count += queue.replay_mismatches
    return queue.engine


class _RowsLog:
    """One day's rows, as ``HallQueue.recover`` reads a log (its day's start, the entries
    after it; no checkpoint): the log's own reads, over a list."""

    def __init__(self, rows: list[_Row]) -> None:
        self._entries = [entry_of(row) for row in rows]

    def day_start(self) -> Entry | None:
        return next((e for e in reversed(self._entries) if e.kind == "day_open"), None)

    def latest_checkpoint(self) -> None:
        return None

    def entries_since(self, seq: int) -> list[Entry]:
        return [e for e in self._entries if e.seq > seq]

    def last_seq(self) -> int:
        return self._entries[-1].seq if self._entries else 0


def logged_day_engine(path: Path, cfg: HallConfig, core_cls: type[Any], day: dt.date) -> Any | None:
    """The engine as it stood at the end of ``day``, replayed from the log at ``path``
    (None when the log has no such day): the desk's comparisons and day reports read
    past days this way, through the same recovery code as a restart."""
    db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE day = ? ORDER BY seq", (day.isoformat(),)
        ).fetchall()
    except sqlite3.DatabaseError:
        return None
    finally:
        db.close()
    if not rows or rows[0][1] != "day_open":
        return None
    quiet = _ReplayMismatches()
    hallqueue.log.addFilter(quiet)
    try:
        return _replay_day(cfg, core_cls, rows)
    except ValueError:
        return None
    finally:
        hallqueue.log.removeFilter(quiet)


def _issued(rows: list[_Row]) -> Counter[str]:
    """Tickets handed out, by the service asked for (a later transfer does not change why
    the taxpayer came)."""
    out: Counter[str] = Counter()
    for row in rows:
        if row[1] != "ticket" or not row[7]:
            continue
        result = json.loads(row[7])
        if result.get("ok") and result.get("info"):
            out[result["info"]["service"]] += 1
    return out


class _ReplayMismatches(logging.Filter):
    """Keeps recovery's one-line-per-command replay warnings off the terminal (over a long
    history with the wrong hall file they would be thousands of lines) and holds their
    count, which the replay adds from the queue itself: a test or a host that reconfigured
    logging may have disabled the logger, and a count read from log records would be 0."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.funcName != "recover":
            return True
        return False


def _profile(
    path: Path, cfg: HallConfig, since: dt.date | None, min_samples: int
) -> tuple[tuple[float, ...] | None, dt.time, int]:
    """Arrivals per open minute by half hour from the profile's start (summing to 100),
    or ``None`` while the hall's open half hours hold fewer than ``min_samples`` tickets
    each on average; the start; and how many tickets fell before it.

    A half hour with no ticket counts half of one: having seen none says its rate is low,
    not nil, and a zero weight would leave the day's Poisson draw without a rate there
    (``weight_at`` also lends the smallest weight to hours before the profile).
    """
    history = arrival_counts(path, cfg)
    first = min([PROFILE_START.hour * 60 + PROFILE_START.minute, *open_slots(cfg)[0]])
    start = dt.time(first // 60, first % 60)
    per_slot: Counter[int] = Counter()
    outside = 0
    for i, day in enumerate(history.days):
        if since is not None and day < since:
            continue
        for j, slot in enumerate(history.slots):
            if slot < first:
                outside += int(history.counts[i, j])
            else:
                per_slot[slot] += int(history.counts[i, j])
    shaped = [s for s in open_slots(cfg)[0] if s >= first]
    if sum(per_slot.values()) < max(1, min_samples * len(shaped)):
        return None, start, outside
    open_min = dict(zip(history.slots, history.open_min, strict=True))
    last = max([*shaped, *(s for s, n in per_slot.items() if n)])
    rated = [max(per_slot[s], 0.5) / (open_min.get(s) or 30.0) for s in range(first, last + 1, 30)]
    scale = 100.0 / sum(rated)
    return tuple(r * scale for r in rated), start, outside


# --- showing it -----------------------------------------------------------------------------


def render_learned(learned: LearnedDemand) -> Group:
    """What the simulation will use, service by service, and where each figure came from."""
    after = f" since {learned.since}" if learned.since else ""
    head = Text(
        f"history {learned.source}{after}: {learned.days} business day(s), "
        f"{learned.issued} ticket(s) issued, {learned.mean_daily:.0f} per day "
        "(--volume sets the simulated day's)"
    )
    table = Table(
        title=f"counter time per service (learned from ≥ {learned.min_samples} "
        "served tickets, else the seed hall's)"
    )
    for name, justify in (
        ("service", "left"),
        ("counter time", "left"),
        ("served", "right"),
        ("dropped", "right"),
        ("mean min", "right"),
        ("sigma", "right"),
        ("mix", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    mix = learned.demand.mix
    for code, f in learned.services.items():
        table.add_row(
            code,
            "learned" if f.learned else "[yellow]seed (too few)[/]",
            str(f.served),
            str(f.dropped),
            f"{f.mean_min:.2f}",
            f"{f.sigma_used:.2f}",
            f"{mix.get(code, 0.0):.1%}",
        )

    def origin(learned_: bool) -> str:
        return "learned" if learned_ else "[yellow]seed (too few tickets)[/]"

    sources = Text.from_markup(
        f"mix: {origin(learned.mix_learned)}; half-hour profile: {origin(learned.profile_learned)}"
    )
    return Group(head, table, sources, *(Text(note, style="yellow") for note in learned.notes))
