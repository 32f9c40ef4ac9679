"""The window agent (呼叫器): pad keys become commands, retained window state the display.

Commands are never queued: a CALL replayed minutes later would call the wrong person, so
while the coordinator cannot be reached the pad says the link is down and nothing is sent.
A command lives exactly as long as the pad waits for its reply (``edge.command_timeout_s``:
the broker or the coordinator drops it after that); when no reply came in time the pad
asks "did it happen?" and shows the answer, which past the deadline is final.
The display follows the retained window state, so a rebooted pad is right at once. A rating
key rates the ticket that window served last.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from edge.health import Health, report_link_health
from firmware_bridge.devices import CallPad
from firmware_bridge.devices.call_pad import PadKey, PadKeyPress
from firmware_bridge.devices.rating_pad import Rating
from firmware_bridge.errors import BridgeError
from firmware_bridge.updates import DeviceState
from hallq import messages as m
from hallq.aio import BackgroundTasks
from hallq.bus import Incoming, Session
from hallq.config import Agent, HallConfig
from hallq.errors import NotConnected, RequestTimeout

log = logging.getLogger("hallq.edge.window")

LINK_DOWN = "网络断开 请稍候"
NO_REPLY = "无响应 请重试"
NOT_DONE = "未执行 请重试"
# a refusal or "no reply" stays this long, then the window's state again: the coordinator
# back, nothing changed, no new state comes to replace it (the pad said 无响应 for minutes)
NOTICE_S = 8.0
PAUSE_AFTER = "办完后暂停"
CLOSE_AFTER = "办完后关窗"
SimpleAction = Literal["call", "recall", "skip", "pause", "resume", "emergency"]
SIMPLE: dict[PadKey, SimpleAction] = {
    PadKey.CALL: "call",
    PadKey.RECALL: "recall",
    PadKey.SKIP: "skip",
    PadKey.PAUSE: "pause",
    PadKey.RESUME: "resume",
    PadKey.EMERGENCY: "emergency",
}


def display_text(state: m.WindowState) -> str:
    """What the pad shows for its window's state; a call withdrawn (the ticket was issued
    offline instead, nobody holds it) is said until the staff's next command."""
    if state.status is m.WindowStatus.PAUSED:
        # paused with a taxpayer called: the clerk still serves them (a bare 暂停服务 hid
        # the ticket, and a CALL that crossed the pause left it called for good)
        if not state.ticket:
            return "暂停服务"
        return f"{state.ticket} {CLOSE_AFTER if state.closing else PAUSE_AFTER}"
    if state.status is m.WindowStatus.CLOSED:
        return "窗口关闭"
    if state.ticket is None and state.withdrawn:
        return f"{state.withdrawn} 已作废 请叫号"
    return state.ticket or "空闲 请叫号"


class WindowAgent:
    def __init__(
        self, cfg: HallConfig, agent: Agent, session: Session, pads: dict[int, CallPad]
    ) -> None:
        self.cfg = cfg
        self.agent = agent
        self.session = session
        self.pads = pads
        self.health = Health(session)
        self.windows = cfg.windows_for_agent(agent.id)
        self.states: dict[int, m.WindowState] = {}
        self.last_served: dict[int, str] = {}
        self.cmd_topic = session.topics.cmd("window", agent.id)
        self._busy: dict[int, asyncio.Lock] = {w: asyncio.Lock() for w in self.windows}
        self._latest: dict[int, str] = {}  # window -> state text not shown yet
        self._showing: dict[int, asyncio.Task[None]] = {}
        self._link_down: set[int] = set()  # windows whose pad last said LINK_DOWN
        self._told: dict[int, int] = {}  # window -> texts sent to its pad (a notice's mark)
        self._displays = BackgroundTasks(f"{agent.id} displays")
        self._closed = False

    async def start(self) -> None:
        for window in self.windows:
            await self.session.subscribe(self.session.topics.window_state(window), self._on_state)
        self.session.on_connect(self.health.publish)
        self.session.on_connect(self._link_back)

    async def show(self, window: int, text: str) -> None:
        pad = self.pads.get(window)
        if pad is None:
            return
        self._told[window] = self._told.get(window, 0) + 1
        try:
            await pad.show(text)
        except BridgeError as exc:
            log.info("%s: pad of window %d cannot show %r: %s", self.agent.id, window, text, exc)

    async def close(self) -> None:
        self._closed = True
        await self._displays.close()

    def _on_state(self, incoming: Incoming) -> None:
        """Runs in the session's message loop, so it must not wait for the serial line: a
        command's reply queued behind a state would wait for a DISPLAY on a busy 9600-baud
        line (the demo's pads timed out on a third of their commands). The pad shows the
        newest state when its line is free; states in between are skipped."""
        state: m.WindowState = incoming.payload
        before = self.states.get(state.window)
        if (
            before is not None
            and before.ticket
            and before.ticket != state.ticket
            and before.ticket != state.withdrawn  # nobody was served: nothing to rate
        ):
            self.last_served[state.window] = before.ticket
        self.states[state.window] = state
        self._queue_show(state.window, display_text(state))

    def _queue_show(self, window: int, text: str) -> None:
        self._link_down.discard(window)
        self._latest[window] = text
        showing = self._showing.get(window)
        if not self._closed and (showing is None or showing.done()):
            self._showing[window] = self._displays.spawn(
                self._show_latest(window), name=f"display {window}"
            )

    async def _link_back(self) -> None:
        """A pad that said the link was down shows its window's state again. When nothing
        changed during the outage, the state the broker kept comes back with the revision
        already seen and is dropped as stale, so without this the pad went on saying
        网络断开 until the window's next change."""
        for window in sorted(self._link_down):
            self._show_state(window)

    def _show_state(self, window: int) -> None:
        """The window's state on its pad again (when its line is free), once one came."""
        state = self.states.get(window)
        if state is not None:
            self._queue_show(window, display_text(state))

    async def _say_link_down(self, window: int) -> None:
        self._link_down.add(window)
        await self.show(window, LINK_DOWN)

    async def _say(self, window: int, notice: str) -> None:
        """``notice`` on the pad for NOTICE_S, then its window's state, unless the pad was
        told anything else meanwhile."""
        await self.show(window, notice)
        mark = self._told.get(window)
        if not self._closed:
            self._displays.spawn(self._notice_ends(window, mark), name=f"notice {window}")

    async def _notice_ends(self, window: int, mark: int | None) -> None:
        await asyncio.sleep(NOTICE_S)
        if self._told.get(window) == mark and window not in self._link_down:
            self._show_state(window)

    async def _show_latest(self, window: int) -> None:
        while window in self._latest:
            await self.show(window, self._latest.pop(window))

    def command_for(self, press: PadKeyPress) -> Any:
        """The command a key press asks for; None if it asks for none (or names no window)."""
        window = press.window
        if window is None:  # handle() passes only presses of this agent's windows
            return None
        if press.key in SIMPLE:
            return m.WindowAction(window=window, action=SIMPLE[press.key])
        if press.key is PadKey.FINISH:
            return m.Finish(window=window, action="finish")
        if press.key is PadKey.TRANSFER and press.target is not None:
            if press.target.kind == "window":
                return m.Transfer(window=window, action="transfer", to_window=press.target.number)
            services = self.cfg.services
            if 1 <= press.target.number <= len(services):
                return m.Transfer(
                    window=window,
                    action="transfer",
                    to_service=services[press.target.number - 1].code,
                )
        return None

    async def send(self, window: int, command: Any) -> m.CommandReply | None:
        """Send one command now or not at all; the pad shows what happened."""
        if not self.session.connected:
            await self._say_link_down(window)
            return None
        try:
            reply: m.CommandReply = await self.session.request(
                self.cmd_topic, command, timeout=self.cfg.edge.command_timeout_s
            )
        except NotConnected:
            await self._say_link_down(window)
            return None
        except RequestTimeout:
            return await self._ask(window, command)
        if not reply.ok and reply.error is not None:
            await self._say(window, reply.error.message)
        return reply

    async def _ask(self, window: int, command: Any) -> m.CommandReply | None:
        """After the deadline: did ``command`` happen? Show the truth, or that we cannot tell."""
        query = m.Query(window=window, action="query", about=command.id)
        try:
            answer: m.CommandReply = await self.session.request(
                self.cmd_topic, query, timeout=self.cfg.edge.command_timeout_s
            )
        except (NotConnected, RequestTimeout):
            await self._say(window, NO_REPLY)
            return None
        if not answer.ok or not answer.happened:
            text = answer.refused.message if answer.refused else NOT_DONE
            await self._say(window, text)
            return answer
        state = self.states.get(window)
        await self.show(window, display_text(state) if state else answer.ticket or "")
        return answer

    async def handle(self, update: Any) -> None:
        if isinstance(update, PadKeyPress) and update.window in self.windows:
            command = self.command_for(update)
            if command is None:
                await self._say(update.window, "无效的转移目标")
                return
            async with self._busy[update.window]:  # one window's keys stay in order
                await self.send(update.window, command)
        elif isinstance(update, Rating) and update.window in self.windows:
            window = update.window
            ticket = self.last_served.get(window)
            if ticket is None:
                log.info(
                    "%s: rating %d at window %d with no ticket served yet",
                    self.agent.id,
                    update.score,
                    window,
                )
                return
            await self.send(
                window, m.Rate(window=window, action="rate", ticket=ticket, rating=update.score)
            )
        elif isinstance(update, DeviceState):
            await report_link_health(self.health, update)
            if update.online:
                self._repaint(update.device)
        else:
            await report_link_health(self.health, update)

    def _repaint(self, device: str) -> None:
        """A pad back online (power-cycled, its line replugged) shows nothing, or what it
        showed before: its window's state goes to it again. A state comes only when the
        window changes, so without this a rebooted pad stayed blank until then."""
        for window, pad in self.pads.items():
            if pad.device == device:
                self._show_state(window)
