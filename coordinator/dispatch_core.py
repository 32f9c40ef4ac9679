# cython: language_level=3, annotation_typing=False
# cython: boundscheck=False, wraparound=False, initializedcheck=False
"""Dispatch core: which waiting ticket a window calls next.

This file is both the pure-Python implementation and the Cython source: ``dispatch_core.pxd``
types it, and ``setup.py`` compiles it when it can. Everything the hot path reads lives in
flat arrays indexed by small ints, so the compiled ``call_next`` touches no Python object.
The score and queue layout are explained in ``coordinator/DISPATCH.md``.
"""

from __future__ import annotations

import operator
from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["APPOINTMENT", "ASSISTED", "GREEN", "NORMAL", "DispatchCore"]

GREEN = 0
APPOINTMENT = 1
ASSISTED = 2
NORMAL = 3

# Compiled code reads these as C ints; the public names above stay ordinary module attributes.
_APPOINTMENT: int = 1
_NORMAL: int = 3
_N_CLASSES: int = 4
_MAX_TICKETS: int = 2**31 - 2


def _ints(n: int, fill: int) -> array[int]:
    return array("i", [fill]) * n


def _doubles(n: int, fill: float) -> array[float]:
    return array("d", [fill]) * n


def _seqs(n: int) -> array[int]:
    return array("q", [0]) * n


def _int_array(code: str, data: object) -> array[int]:
    a: array[int] = array(code)
    a.frombytes(data)  # type: ignore[arg-type]
    return a


def _float_array(data: object) -> array[float]:
    a: array[float] = array("d")
    a.frombytes(data)  # type: ignore[arg-type]
    return a


class DispatchCore:
    """Per-hall queues and the call-next choice, over dense ticket/service/window indices.

    The engine owns identities (ticket numbers, service codes, window names) and maps them to
    indices; this class only orders and picks, so it can be compiled and run the simulator too.
    """

    def __init__(self, n_services: int, n_windows: int, capacity: int = 1024) -> None:
        if n_services < 1 or n_windows < 1:
            raise ValueError(
                f"need at least one service and one window, got {n_services}, {n_windows}"
            )
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.n_services = n_services
        self.n_windows = n_windows
        self.capacity = capacity
        self.boost = 2.0
        self.n_fifo = n_services * _N_CLASSES
        n_queues = self.n_fifo + n_windows
        self.qhead = _ints(n_queues, -1)
        self.qtail = _ints(n_queues, -1)
        self.head_issue = _doubles(n_queues, 0.0)
        self.head_seq = _seqs(n_queues)
        self.head_start = _doubles(n_queues, 0.0)
        self.head_end = _doubles(n_queues, 0.0)
        self.svc_waiting = _ints(n_services, 0)
        self.target = _doubles(n_services, float("inf"))
        self.sk_svc = _ints(n_windows * n_services, 0)
        self.sk_weight = _doubles(n_windows * n_services, 0.0)
        self.sk_n = _ints(n_windows, 0)
        self.walk = _ints(_N_CLASSES, -1)
        self.nxt = _ints(capacity, -1)
        self.prv = _ints(capacity, -1)
        self.tqueue = _ints(capacity, -1)
        self.tsvc = _ints(capacity, 0)
        self.issue = _doubles(capacity, 0.0)
        self.astart = _doubles(capacity, 0.0)
        self.aend = _doubles(capacity, 0.0)
        self.tseq = _seqs(capacity)

    # checkpoints

    def export_state(self) -> dict[str, object]:
        """Everything this core holds, as bytes: a checkpoint restored by ``import_state``
        instead of replaying the day (a restart answers in a fraction of a second)."""
        return {
            "capacity": self.capacity,
            "boost": self.boost,
            "qhead": bytes(self.qhead),
            "qtail": bytes(self.qtail),
            "head_issue": bytes(self.head_issue),
            "head_seq": bytes(self.head_seq),
            "head_start": bytes(self.head_start),
            "head_end": bytes(self.head_end),
            "svc_waiting": bytes(self.svc_waiting),
            "target": bytes(self.target),
            "sk_svc": bytes(self.sk_svc),
            "sk_weight": bytes(self.sk_weight),
            "sk_n": bytes(self.sk_n),
            "nxt": bytes(self.nxt),
            "prv": bytes(self.prv),
            "tqueue": bytes(self.tqueue),
            "tsvc": bytes(self.tsvc),
            "issue": bytes(self.issue),
            "astart": bytes(self.astart),
            "aend": bytes(self.aend),
            "tseq": bytes(self.tseq),
        }

    def import_state(self, state: dict[str, object]) -> None:
        """Take over a state from ``export_state`` of a core of the same shape."""
        self.capacity = int(state["capacity"])  # type: ignore[call-overload]
        self.boost = float(state["boost"])  # type: ignore[arg-type]
        self.qhead = _int_array("i", state["qhead"])
        self.qtail = _int_array("i", state["qtail"])
        self.head_issue = _float_array(state["head_issue"])
        self.head_seq = _int_array("q", state["head_seq"])
        self.head_start = _float_array(state["head_start"])
        self.head_end = _float_array(state["head_end"])
        self.svc_waiting = _int_array("i", state["svc_waiting"])
        self.target = _float_array(state["target"])
        self.sk_svc = _int_array("i", state["sk_svc"])
        self.sk_weight = _float_array(state["sk_weight"])
        self.sk_n = _int_array("i", state["sk_n"])
        self.nxt = _int_array("i", state["nxt"])
        self.prv = _int_array("i", state["prv"])
        self.tqueue = _int_array("i", state["tqueue"])
        self.tsvc = _int_array("i", state["tsvc"])
        self.issue = _float_array(state["issue"])
        self.astart = _float_array(state["astart"])
        self.aend = _float_array(state["aend"])
        self.tseq = _int_array("q", state["tseq"])

    # configuration

    def set_service(self, s: int, target_s: float) -> None:
        """Wait target of service ``s``; tickets waiting at least this long get the boost."""
        self._check_service(s)
        if not target_s >= 0.0:
            raise ValueError(f"wait target must be >= 0 seconds, got {target_s}")
        self.target[s] = target_s

    def set_boost(self, factor: float) -> None:
        """Urgency multiplier for overdue tickets; 1.0 turns the boost off."""
        if not 0.0 < factor < float("inf"):
            raise ValueError(f"boost factor must be positive and finite, got {factor}")
        self.boost = factor

    def set_skills(self, w: int, services: Sequence[int], weights: Sequence[float]) -> None:
        """Replace window ``w``'s skills; validated as a whole so a bad list changes nothing."""
        self._check_window(w)
        n = len(services)
        if len(weights) != n:
            raise ValueError(f"{n} services but {len(weights)} weights for window {w}")
        checked: dict[int, float] = {}
        for i in range(n):
            s = operator.index(services[i])
            weight = float(weights[i])
            self._check_service(s)
            if s in checked:
                raise ValueError(f"service {s} listed twice for window {w}")
            if not 0.0 <= weight < float("inf"):
                raise ValueError(f"weight must be finite and >= 0, got {weight}")
            checked[s] = weight
        i = w * self.n_services
        for s, weight in checked.items():
            self.sk_svc[i] = s
            self.sk_weight[i] = weight
            i += 1
        self.sk_n[w] = n

    def clear(self) -> None:
        """Empty every queue and forget every ticket, keeping services, targets, boost and
        skills: the same hall on a new day, without configuring it again (the simulator
        plays thousands of days on one configured core)."""
        for q in range(self.n_fifo + self.n_windows):
            self.qhead[q] = -1
            self.qtail[q] = -1
        for s in range(self.n_services):
            self.svc_waiting[s] = 0
        for t in range(self.capacity):
            self.tqueue[t] = -1
            self.nxt[t] = -1
            self.prv[t] = -1

    # enqueue

    def add(
        self,
        t: int,
        s: int,
        cls: int,
        issue_time: float,
        seq: int,
        appt_start: float = 0.0,
        appt_end: float = 0.0,
    ) -> None:
        """Queue a new or transferred ticket at its issue-order (or slot-order) place."""
        self._prepare(t, s, cls)
        self.astart[t] = appt_start
        self.aend[t] = appt_end
        self._store(t, s, issue_time, seq)
        self._insert_ordered(t, s * _N_CLASSES + cls, cls == _APPOINTMENT)
        self.svc_waiting[s] += 1

    def add_behind_head(self, t: int, s: int, cls: int, issue_time: float, seq: int) -> None:
        """Reinstate a skipped ticket: it is called right after whoever is next now.

        The appointment slot from the ticket's last ``add`` is kept.
        """
        self._prepare(t, s, cls)
        self._store(t, s, issue_time, seq)
        q = s * _N_CLASSES + cls
        self._link_after(t, q, self.qhead[q])
        self.svc_waiting[s] += 1

    def add_directed(self, t: int, w: int, s: int, cls: int, issue_time: float, seq: int) -> None:
        """Transfer to one window, which calls it before anything else (in issue order)."""
        self._check_window(w)
        self._prepare(t, s, cls)
        self._store(t, s, issue_time, seq)
        self._insert_ordered(t, self.n_fifo + w, False)

    def remove(self, t: int) -> bool:
        """Take a ticket out of whatever queue holds it (cancelled, served elsewhere)."""
        if not self.queued(t):
            return False
        self._unlink(t)
        return True

    # calling

    def call_next(self, w: int, now: float) -> int:
        """Best candidate for window ``w`` at ``now``, already unlinked; -1 if none."""
        self._check_window(w)
        t = self._pick(w, now)
        if t >= 0:
            self._unlink(t)
        return t

    def peek_next(self, w: int, now: float) -> int:
        """What ``call_next`` would return, without taking it (for displays and tests)."""
        self._check_window(w)
        return self._pick(w, now)

    # queries

    def queued(self, t: int) -> bool:
        """Whether ticket ``t`` waits in some queue; out-of-range indices are simply not."""
        return 0 <= t < self.capacity and self.tqueue[t] >= 0

    def waiting(self, s: int) -> int:
        """Tickets waiting for service ``s`` in its class queues (directed ones excluded)."""
        self._check_service(s)
        return self.svc_waiting[s]

    def position(self, t: int, now: float) -> int:
        """People ahead of ``t``: what a window serving only its service would call first.

        A directed ticket counts the tickets ahead of it in its window's queue. -1 if ``t``
        is not queued.
        """
        if not self.queued(t):
            return -1
        q = self.tqueue[t]
        ahead = 0
        if q >= self.n_fifo:
            a = self.prv[t]
            while a >= 0:
                ahead += 1
                a = self.prv[a]
            return ahead
        self._walk_from(self.tsvc[t])
        while True:
            best = self._walk_step(self.tsvc[t], now)
            if best == t or best < 0:
                return ahead
            ahead += 1

    def upcoming(self, s: int, now: float, limit: int) -> list[int]:
        """Up to ``limit`` tickets of service ``s`` in the order a window serving only it
        would call them -- the order ``position`` counts, so a queue's "next" list and the
        people-ahead figure agree with the dispatcher."""
        self._check_service(s)
        out: list[int] = []
        self._walk_from(s)
        while len(out) < limit:
            best = self._walk_step(s, now)
            if best < 0:
                break
            out.append(best)
        return out

    # internals

    def _pick(self, w: int, now: float) -> int:
        directed = self.qhead[self.n_fifo + w]
        if directed >= 0:
            return directed
        boost = self.boost
        best = -1
        best_cls = _N_CLASSES
        best_urg = 0.0
        best_seq = 0
        base = w * self.n_services
        for i in range(base, base + self.sk_n[w]):
            s = self.sk_svc[i]
            weight = self.sk_weight[i]
            limit = self.target[s]
            q = s * _N_CLASSES
            for c in range(_N_CLASSES):
                if c > best_cls:
                    break
                h = self.qhead[q + c]
                if h < 0:
                    continue
                eff = c
                if c == _APPOINTMENT and not (
                    self.head_start[q + c] <= now <= self.head_end[q + c]
                ):
                    eff = _NORMAL
                    if best_cls < _NORMAL:
                        continue
                wait = now - self.head_issue[q + c]
                urg = wait * weight
                if wait >= limit:
                    urg = urg * boost
                if (
                    eff < best_cls
                    or urg > best_urg
                    or (urg == best_urg and self.head_seq[q + c] < best_seq)
                ):
                    best = h
                    best_cls = eff
                    best_urg = urg
                    best_seq = self.head_seq[q + c]
        return best

    def _walk_from(self, s: int) -> None:
        base = s * _N_CLASSES
        for c in range(_N_CLASSES):
            self.walk[c] = self.qhead[base + c]

    def _walk_step(self, s: int, now: float) -> int:
        """The next ticket of a walk over service ``s``'s class queues, by ``_pick``'s rule
        for one window with weight 1: strongest class in force, then most urgent wait (past
        the target boosted), then the lower seq. Advances the walk; -1 at the end."""
        walk = self.walk
        target = self.target[s]
        boost = self.boost
        best = -1
        best_c = 0
        best_cls = _N_CLASSES
        best_urg = 0.0
        best_seq = 0
        for c in range(_N_CLASSES):
            h = walk[c]
            if h < 0:
                continue
            eff = c
            if c == _APPOINTMENT and not (self.astart[h] <= now <= self.aend[h]):
                eff = _NORMAL
            if eff > best_cls:
                continue
            wait = now - self.issue[h]
            urg = wait
            if wait >= target:
                urg = urg * boost
            if eff < best_cls or urg > best_urg or (urg == best_urg and self.tseq[h] < best_seq):
                best = h
                best_c = c
                best_cls = eff
                best_urg = urg
                best_seq = self.tseq[h]
        if best >= 0:
            walk[best_c] = self.nxt[best]
        return best

    def _check_window(self, w: int) -> None:
        if not 0 <= w < self.n_windows:
            raise IndexError(f"window index {w} out of range 0..{self.n_windows - 1}")

    def _check_service(self, s: int) -> None:
        if not 0 <= s < self.n_services:
            raise IndexError(f"service index {s} out of range 0..{self.n_services - 1}")

    def _prepare(self, t: int, s: int, cls: int) -> None:
        if not 0 <= t <= _MAX_TICKETS:
            raise IndexError(f"ticket index must be 0..{_MAX_TICKETS}, got {t}")
        self._check_service(s)
        if not 0 <= cls < _N_CLASSES:
            raise ValueError(f"class must be 0..{_N_CLASSES - 1}, got {cls}")
        if t >= self.capacity:
            self._grow(t + 1)
        elif self.tqueue[t] >= 0:
            raise ValueError(f"ticket {t} is already queued")

    def _store(self, t: int, s: int, issue_time: float, seq: int) -> None:
        self.tsvc[t] = s
        self.issue[t] = issue_time
        self.tseq[t] = seq

    def _grow(self, need: int) -> None:
        """Double (at least) every per-ticket array; amortised O(1) per ticket."""
        old = self.capacity
        cap = max(need, 2 * old)
        self.nxt = self._more_ints(self.nxt, old, cap, -1)
        self.prv = self._more_ints(self.prv, old, cap, -1)
        self.tqueue = self._more_ints(self.tqueue, old, cap, -1)
        self.tsvc = self._more_ints(self.tsvc, old, cap, 0)
        self.issue = self._more_doubles(self.issue, old, cap)
        self.astart = self._more_doubles(self.astart, old, cap)
        self.aend = self._more_doubles(self.aend, old, cap)
        self.tseq = self._more_seqs(self.tseq, old, cap)
        self.capacity = cap

    # In these three, ``dst`` is a typed memoryview when compiled: the slice copy is a memcpy.

    def _more_ints(self, src: array[int], old: int, cap: int, fill: int) -> array[int]:
        grown = _ints(cap, fill)
        dst = grown
        dst[:old] = src[:old]
        return grown

    def _more_doubles(self, src: array[float], old: int, cap: int) -> array[float]:
        grown = _doubles(cap, 0.0)
        dst = grown
        dst[:old] = src[:old]
        return grown

    def _more_seqs(self, src: array[int], old: int, cap: int) -> array[int]:
        grown = _seqs(cap)
        dst = grown
        dst[:old] = src[:old]
        return grown

    def _insert_ordered(self, t: int, q: int, by_slot: bool) -> None:
        """Issue order -- issue time, then seq -- behind any earlier appointment slot.

        Walks from the tail: a fresh ticket lands there in O(1); a transferred one, or one
        issued offline and replayed late (older time, newer seq), at its issue-time place.
        """
        seq = self.tseq[t]
        issued = self.issue[t]
        start = self.astart[t]
        a = self.qtail[q]
        while a >= 0:
            if by_slot and self.astart[a] != start:
                if self.astart[a] < start:
                    break
            elif self.issue[a] < issued or (self.issue[a] == issued and self.tseq[a] < seq):
                break
            a = self.prv[a]
        self._link_after(t, q, a)

    def _link_after(self, t: int, q: int, a: int) -> None:
        """Link ``t`` into queue ``q`` after ticket ``a`` (-1: at the head)."""
        if a < 0:
            n = self.qhead[q]
            self._set_head(q, t)
        else:
            n = self.nxt[a]
            self.nxt[a] = t
        self.prv[t] = a
        self.nxt[t] = n
        if n >= 0:
            self.prv[n] = t
        else:
            self.qtail[q] = t
        self.tqueue[t] = q

    def _set_head(self, q: int, t: int) -> None:
        """Copy the new head's key fields next to the queue, where ``_pick`` reads them.

        ``_pick`` then scans a few small per-queue arrays instead of chasing ticket indices
        into arrays as long as the day's ticket count.
        """
        self.qhead[q] = t
        if t >= 0:
            self.head_issue[q] = self.issue[t]
            self.head_seq[q] = self.tseq[t]
            self.head_start[q] = self.astart[t]
            self.head_end[q] = self.aend[t]

    def _unlink(self, t: int) -> None:
        q = self.tqueue[t]
        p = self.prv[t]
        n = self.nxt[t]
        if p >= 0:
            self.nxt[p] = n
        else:
            self._set_head(q, n)
        if n >= 0:
            self.prv[n] = p
        else:
            self.qtail[q] = p
        self.nxt[t] = -1
        self.prv[t] = -1
        self.tqueue[t] = -1
        if q < self.n_fifo:
            self.svc_waiting[self.tsvc[t]] -= 1
