# cython: language_level=3, annotation_typing=False
# cython: boundscheck=False, wraparound=False, initializedcheck=False
"""The simulator's day loop, compiled like the dispatch core it drives.

Who is called next is decided by the hall's own :class:`DispatchCore`, configured by a real
:class:`~coordinator.engine.Engine` (services, wait targets, boost, window skills); this
loop only moves time and people, and applies the engine's issuing rules (service hours,
daily caps, the number space). It is what ``coordinator.simulation.day.run_day`` does
through ``Engine.apply`` command by command, minus the per-command Python work -- and a
test holds the two to the same waits, ticket for ticket.

This file is both the pure-Python loop and the Cython source (``fastday.pxd`` types it);
the compiled loop needs the compiled core and the pure one the pure core, and
``coordinator.simulation.day`` pairs them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ADMITTED",
    "BOOKED",
    "CALLED",
    "CAPPED",
    "CLOSED",
    "EXHAUSTED",
    "NO_SHOWS",
    "N_COUNTS",
    "SAMPLED",
    "SERVED",
    "TRANSFERRED",
    "UNKNOWN",
    "play",
    "split",
]

# indices into ``counts``
ADMITTED = 0
SERVED = 1
NO_SHOWS = 2
CLOSED = 3
CAPPED = 4
EXHAUSTED = 5
UNKNOWN = 6
SAMPLED = 7
TRANSFERRED = 8
CALLED = 9
BOOKED = 10
N_COUNTS = 11

_FREE = 0
_NOSHOW = 1


def _push(ht: Any, hk: Any, hp: Any, size: int, t: float, key: int, p: int) -> int:
    """Add an event: at ``t``, tie ``key`` (kind and window number, see ``_key``), for
    window position ``p``. The heap is ordered by (time, kind, window number): the
    engine-driven loop's tuple order."""
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if ht[parent] < t or (ht[parent] == t and hk[parent] < key):
            break
        ht[i] = ht[parent]
        hk[i] = hk[parent]
        hp[i] = hp[parent]
        i = parent
    ht[i] = t
    hk[i] = key
    hp[i] = p
    return size + 1


def _pop(ht: Any, hk: Any, hp: Any, size: int) -> int:
    """Remove the root (read it first); returns the new size."""
    size -= 1
    if size > 0:
        _sift(ht, hk, hp, size, ht[size], hk[size], hp[size])
    return size


def _sift(ht: Any, hk: Any, hp: Any, size: int, t: float, key: int, p: int) -> None:
    """Put (t, key, p) in the root's place and sift it down: a pop and a push in one."""
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and (ht[c + 1] < ht[c] or (ht[c + 1] == ht[c] and hk[c + 1] < hk[c])):
            c += 1
        if t < ht[c] or (t == ht[c] and key < hk[c]):
            break
        ht[i] = ht[c]
        hk[i] = hk[c]
        hp[i] = hp[c]
        i = c
    ht[i] = t
    hk[i] = key
    hp[i] = p


def _key(kind: int, number: int) -> int:
    return kind * 1024 + number  # window numbers are 1..999


def _rebuild(
    n_win: int,
    n_svc: int,
    wsk: Any,
    incur: Any,
    rank: Any,
    by_rank: Any,
    serve_off: Any,
    serve_pos: Any,
) -> None:
    """Windows serving each service, open ones only, in the order they were opened: the
    order the engine-driven loops offer an arrival to idle windows."""
    m = 0
    for p in range(n_win):
        if incur[p]:
            k = m
            while k > 0 and rank[by_rank[k - 1]] > rank[p]:
                by_rank[k] = by_rank[k - 1]
                k -= 1
            by_rank[k] = p
            m += 1
    k = 0
    for s in range(n_svc):
        serve_off[s] = k
        for j in range(m):
            if wsk[by_rank[j] * n_svc + s]:
                serve_pos[k] = by_rank[j]
                k += 1
    serve_off[n_svc] = k


def play(
    core: Any,
    at: Any,
    asvc: Any,
    aserv: Any,
    anoshow: Any,
    ax: Any,
    axs: Any,
    asa: Any,
    asb: Any,
    n_back: int,
    svc_of_code: Any,
    cls_of: Any,
    green_cls: int,
    appt_cls: int,
    cap: Any,
    ceiling: Any,
    hours: Any,
    hours_off: Any,
    win_idx: Any,
    win_num: Any,
    wsk: Any,
    incur: Any,
    rank: Any,
    free_at: Any,
    ch_t: Any,
    ch_p: Any,
    ch_sk: Any,
    ch_svcs: Any,
    ch_wts: Any,
    base: float,
    t0: float,
    no_show_wait: float,
    sample_from: float,
    sample_s: float,
    bin_s: float,
    tsvc: Any,
    tissue: Any,
    tarr: Any,
    tcls: Any,
    tsa: Any,
    tsb: Any,
    tback: Any,
    tcall: Any,
    cwait: Any,
    csvc: Any,
    cbook: Any,
    busy: Any,
    samples: Any,
    bins: Any,
    bin_n: Any,
    counts: Any,
    work: Any,
    flags: Any,
    wcur: Any,
    occ: Any,
    by_rank: Any,
    serve_off: Any,
    serve_pos: Any,
    ht: Any,
    hk: Any,
    hp: Any,
) -> float:
    """Play one day (or the rest of one); returns the time of the last finish (or ``t0``).

    Arrivals by column: seconds from midnight, code index, counter seconds, no-show,
    transfer code index or -1 and its counter seconds, booked slot or 0, 0. The first
    ``n_back`` are a backlog: tickets issued before ``t0`` (at their own times) and still
    waiting; the rest arrive in time order. ``svc_of_code``: core service index per code
    (-1 unknown); per core service ``cls_of``, ``cap`` (-1: none), ``ceiling`` and opening
    spans ``hours[2k:2k+2]`` for ``k`` in ``hours_off[s]..hours_off[s+1]``.

    Windows by position ``p``: core index, number, the services they serve
    (``wsk[p * n_svc + s]``), whether open at ``t0`` (``incur``), their order of opening
    (``rank``), when a busy one becomes free (``free_at``, seconds from midnight, <= start
    when not busy). Skill changes in time order: at ``ch_t[k]`` (epoch) window ``ch_p[k]``
    gets the services of row ``k`` of ``ch_sk`` -- none closes it -- and the core gets
    ``core.set_skills(index, ch_svcs[k], ch_wts[k])``.

    Outputs, filled in place: per ticket (issue order) its service, issue time, arrival,
    class, slot and transfer time (-1: none); per call of a present taxpayer (call order)
    the wait and service, and per booked one its wait from the slot's start; per ticket
    the time (epoch) of its first call, -1 if it was never called (``tcall``); per window its
    busy seconds; ``samples[k]`` tickets waiting at ``sample_from + k * sample_s`` (as far
    as it has room); ``bins``/``bin_n`` wait sum and count by issue time; ``counts`` (see
    the module's indices). The rest is scratch: ``work``/``flags`` one slot per window and
    per service, ``wcur``/``occ``/``by_rank`` one per window, ``serve_off`` one per
    service and one more, ``serve_pos`` one per window and service, ``ht/hk/hp`` a heap of
    one per window.
    """
    n = len(at)
    n_win = len(win_idx)
    n_samples = len(samples)
    n_bins = len(bins)
    n_svc = len(cls_of)
    n_ch = len(ch_t)
    # scratch: idle flag per window in flags[0:n_win], tickets issued per service in
    # flags[n_win:n_win+n_svc], idle-since per window in work[0:n_win]
    for s in range(n_svc):
        flags[n_win + s] = 0
    size = 0
    start = t0 - base
    for p in range(n_win):
        flags[p] = 0
        wcur[p] = -1
        occ[p] = 0
        if not incur[p]:
            continue
        if free_at[p] > start:
            size = _push(ht, hk, hp, size, base + free_at[p], _key(_FREE, win_num[p]), p)
            occ[p] = 1
        else:
            flags[p] = 1
            work[p] = t0
    _rebuild(n_win, n_svc, wsk, incur, rank, by_rank, serve_off, serve_pos)
    next_rank = 0
    for p in range(n_win):
        if rank[p] >= next_rank:
            next_rank = rank[p] + 1
    i = 0
    j = 0
    nt = 0
    nc = 0
    nb = 0
    waiting = 0
    ns = 0
    next_sample = sample_from
    last_end = t0
    wake = 0  # backlog issued: the idle windows call, in number order, before all else
    while i < n or size > 0 or j < n_ch or wake >= 0:
        then = -1  # after calling on ``p``: a window to wake for ``then``'s new service
        root = False
        back = i < n_back
        if back:
            now = base + at[i]
            rel = at[i]
            kind = 2
            i += 1
        elif wake >= 0:
            if wake == 0 and nt == 0:
                wake = -1
                continue
            p = -1
            for q in range(n_win):  # the lowest-numbered idle window not yet woken
                if flags[q] and win_num[q] >= wake and (p < 0 or win_num[q] < win_num[p]):
                    p = q
            if p < 0:
                wake = -1
                continue
            wake = win_num[p] + 1
            now = t0
            rel = start
            kind = 4
        elif size > 0 and (i >= n or ht[0] <= base + at[i]) and (j >= n_ch or ht[0] <= ch_t[j]):
            now = ht[0]
            kind = hk[0] >> 10
            p = hp[0]
            root = True  # popped when done, or replaced by ``p``'s next event
            rel = now - base
        elif i < n and (j >= n_ch or base + at[i] <= ch_t[j]):
            rel = at[i]
            now = base + rel
            kind = 2
            i += 1
        else:
            now = ch_t[j]
            rel = now - base
            kind = 3
            j += 1
        while next_sample <= rel and not back and kind != 4:
            if ns < n_samples:
                samples[ns] = waiting
                ns += 1
            next_sample += sample_s
        if kind == 2:
            a = i - 1
            s = svc_of_code[asvc[a]]
            if s < 0:
                counts[UNKNOWN] += 1
                continue
            is_open = False
            for k in range(hours_off[s], hours_off[s + 1]):
                if hours[2 * k] <= rel < hours[2 * k + 1]:
                    is_open = True
                    break
            if not is_open:
                counts[CLOSED] += 1
                continue
            issued = flags[n_win + s]
            if 0 <= cap[s] <= issued:
                counts[CAPPED] += 1
                continue
            if issued + 1 >= ceiling[s]:
                counts[EXHAUSTED] += 1
                continue
            flags[n_win + s] = issued + 1
            t = nt
            nt += 1
            tsvc[t] = s
            tissue[t] = now
            tarr[t] = a
            tback[t] = -1.0
            tcall[t] = -1.0
            c = cls_of[s]
            if asb[a] > 0.0 and c != green_cls:
                c = appt_cls
                tsa[t] = base + asa[a]
                tsb[t] = base + asb[a]
            else:
                tsa[t] = 0.0
                tsb[t] = 0.0
            tcls[t] = c
            core.add(t, s, c, now, t, tsa[t], tsb[t])
            waiting += 1
            if back:
                continue
            p = -1
            for k in range(serve_off[s], serve_off[s + 1]):
                q = serve_pos[k]
                if flags[q] and (p < 0 or work[q] < work[p]):
                    p = q
            if p < 0:
                continue
        elif kind == 3:
            k = j - 1
            p = ch_p[k]
            opened = False
            for s in range(n_svc):
                wsk[p * n_svc + s] = ch_sk[k * n_svc + s]
                if ch_sk[k * n_svc + s]:
                    opened = True
            if opened:
                core.set_skills(win_idx[p], ch_svcs[k], ch_wts[k])
                if not incur[p]:
                    incur[p] = 1
                    rank[p] = next_rank
                    next_rank += 1
                _rebuild(n_win, n_svc, wsk, incur, rank, by_rank, serve_off, serve_pos)
                if occ[p]:
                    continue
            else:
                if incur[p]:
                    incur[p] = 0
                    _rebuild(n_win, n_svc, wsk, incur, rank, by_rank, serve_off, serve_pos)
                flags[p] = 0
                continue
        elif kind != 4:
            occ[p] = 0
            t = wcur[p]
            wcur[p] = -1
            if kind == _NOSHOW:
                counts[NO_SHOWS] += 1
                last_end = now
            elif t < 0:
                pass  # busy at the start with a ticket from before it
            elif ax[tarr[t]] >= 0 and tback[t] < 0.0:
                last_end = now
                s = svc_of_code[ax[tarr[t]]]
                tsvc[t] = s
                tback[t] = now
                core.add(t, s, tcls[t], tissue[t], t, tsa[t], tsb[t])
                counts[TRANSFERRED] += 1
                waiting += 1
                then = t
            else:
                last_end = now
                counts[SERVED] += 1
        for r in range(2):
            if r == 1:
                if then < 0 or not core.queued(then):
                    break
                p = -1
                for k in range(serve_off[tsvc[then]], serve_off[tsvc[then] + 1]):
                    q = serve_pos[k]
                    if flags[q] and (p < 0 or work[q] < work[p]):
                        p = q
                if p < 0:
                    break
            flags[p] = 0
            if not incur[p]:
                continue
            t = core.call_next(win_idx[p], now)
            if t < 0:
                flags[p] = 1
                work[p] = now
                continue
            waiting -= 1
            a = tarr[t]
            wcur[p] = t
            occ[p] = 1
            if tback[t] < 0.0:
                tcall[t] = now
            gone = tback[t] < 0.0 and anoshow[a]
            if gone:
                d = no_show_wait
            elif tback[t] < 0.0:
                d = aserv[a]
            else:
                d = axs[a]
            busy[p] += d
            key = _key(_NOSHOW if gone else _FREE, win_num[p])
            if root and r == 0:  # the event just handled was p's: reuse its heap slot
                _sift(ht, hk, hp, size, now + d, key, p)
            else:
                if root:
                    size = _pop(ht, hk, hp, size)
                size = _push(ht, hk, hp, size, now + d, key, p)
            root = False
            if gone:
                continue
            if tback[t] < 0.0:
                wait = now - tissue[t]
                if tcls[t] == appt_cls:
                    cbook[nb] = max(0.0, now - max(tissue[t], tsa[t]))
                    nb += 1
            else:
                wait = now - tback[t]
            cwait[nc] = wait
            csvc[nc] = tsvc[t]
            nc += 1
            rel = tissue[t] - base
            if rel >= 0.0:
                b = int(rel / bin_s)
                if b < n_bins:
                    bins[b] += wait
                    bin_n[b] += 1
        if root:
            size = _pop(ht, hk, hp, size)
    counts[ADMITTED] = nt
    counts[SAMPLED] = ns
    counts[CALLED] = nc
    counts[BOOKED] = nb
    return last_end


def split(values: Any, keys: Any, n: int, n_keys: int, out: Any, offsets: Any) -> None:
    """``values[:n]`` grouped by ``keys`` into ``out``, in their order within a group:
    group ``k`` is ``out[offsets[k]:offsets[k + 1]]`` (a counting sort)."""
    for k in range(n_keys + 1):
        offsets[k] = 0
    for i in range(n):
        offsets[keys[i] + 1] += 1
    for k in range(n_keys):
        offsets[k + 1] += offsets[k]
    for i in range(n):
        k = keys[i]
        out[offsets[k]] = values[i]
        offsets[k] += 1
    for k in range(n_keys, 0, -1):
        offsets[k] = offsets[k - 1]
    offsets[0] = 0
