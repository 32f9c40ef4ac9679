"""A supervisor's stop on one device's login, for when its password is in the wrong hands
(an alert on the desk names the device: 取号过快, 设备编号重复...) and a field engineer is an
hour away.

Every command from a suspended client is refused (``device_suspended``) until a supervisor
resumes it, whatever the broker lets through; the suspension is a command in the event log,
so a replay refuses alike, and it outlives the business day. Suspending can also void the
tickets the device issued since a given time that still wait: the fake ones of a flood.

Not on the wire: the desk submits it over HTTP, as a named supervisor.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field

from coordinator.engine import Engine, Outcome, reject
from hallq import messages as m
from hallq.messages import TicketState, WindowStatus

# the desk offers to void what a device issued in these last minutes, with its suspension
VOID_MINUTES = 10
REFUSED = "device_suspended"  # the code of every refusal (not logged: HallQueue.submit)
# what a suspended device may still do: ask whether a command of its happened (read only)
READ_ONLY = (m.Query,)
# what its dispenser prints and its pad shows (a pad's display is 32 columns)
REFUSED_ZH = {
    "dispenser": "本机已停用，请到其他取号机取号",
    "window": "本机已停用 请联系主管",
    "supervisor": "本机已停用",
}


class DeviceCommand(m.Command):
    kind: Literal["device"]
    action: Literal["suspend", "resume"]
    client: str = Field(min_length=1, max_length=64, description="the agent id (its login)")
    void_since: AwareDatetime | None = Field(
        default=None,
        description="with suspend: void the still-waiting tickets the device issued at or "
        "after this time",
    )


def refused(engine: Engine, role: str, client: str, command: Any) -> Outcome | None:
    """Refused when ``client`` is suspended, the replay of a ticket printed offline too:
    its print time is the sender's word, and a login in other hands backdates its tickets
    to the head of the queue. The real dispenser holds such a replay (REPLAY_HELD) until
    the supervisor resumes it, once the password is rotated; its holder then takes the
    place the ticket was printed for."""
    if client not in engine.suspended or isinstance(command, READ_ONLY):
        return None
    return reject(REFUSED, REFUSED_ZH.get(role, "本机已停用"))


def apply(engine: Engine, devices: set[str], command: DeviceCommand, now: float) -> Outcome:
    """Suspend or resume ``command.client``, one of ``devices`` (the agents and supervisor
    consoles: logins with a password that may be stolen); a supervisor's command, the
    caller checked."""
    client = command.client
    if client not in devices:
        return reject("unknown_device", f"{client} 不是本厅的设备")
    if command.action == "resume":
        if engine.suspended.pop(client, None) is None:
            return reject("not_suspended", f"{client} 未停用")
        return Outcome(ok=True)
    if client in engine.suspended:
        return reject("already_suspended", f"{client} 已停用")
    engine.suspended[client] = now
    outcome = Outcome(ok=True)
    for n in pauses(engine, client):
        paused = engine.apply(m.WindowAction(window=n, action="pause"), now, client)
        outcome.windows |= paused.windows
        outcome.services |= paused.services
    if command.void_since is None:
        return outcome
    since = command.void_since.timestamp()
    for t in [t for t in engine.tickets if _voids(t, client, since)]:
        voided = engine.void(
            m.VoidRequest(kind="void", number=t.number, reason="设备停用: 作废其取号"), client
        )
        outcome.events += voided.events
        outcome.services |= voided.services
    return outcome


def pauses(engine: Engine, client: str) -> list[int]:
    """The open windows suspending ``client`` pauses: a window agent's. Its pads cannot
    call any more, and an open window that cannot call would count in every wait estimate
    and on the boards as serving. Resuming the login leaves them paused: the window's own
    恢复 key (or the desk) opens each when someone is there to call."""
    agent = next((a for a in engine.cfg.agents if a.id == client), None)
    if agent is None or agent.role != "window":
        return []
    return [
        n
        for n in engine.cfg.windows_for_agent(client)
        if n in engine.windows and engine.windows[n].status is WindowStatus.OPEN
    ]


def voidable(engine: Engine, client: str, since: float) -> int:
    """How many tickets suspending ``client`` with ``void_since`` would void (the desk's
    confirmation says it)."""
    return sum(1 for t in engine.tickets if _voids(t, client, since))


def voidable_by_device(engine: Engine, since: float) -> dict[str, int]:
    """:func:`voidable` for every device at once, in one pass over the day."""
    counts: dict[str, int] = {}
    for t in engine.tickets:
        if _voids(t, t.source, since):
            counts[t.source] = counts.get(t.source, 0) + 1
    return counts


def _voids(t: Any, client: str, since: float) -> bool:
    """Sent by ``client`` since then: an offline replay by its arrival, not its print time
    (a thief backdated 2,400 replays to the opening, and suspending it voided 41)."""
    return (
        t.source == client
        and t.state is TicketState.WAITING
        and max(t.issued_at, t.arrived_at) >= since
    )
