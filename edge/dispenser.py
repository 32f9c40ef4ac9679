"""The dispenser agent (取号机): a key press becomes a printed ticket, online or not.

Online: request -> the coordinator's reply -> print; a ticket that fails to print is voided
so no ghost number waits. When the reply does not come in time (or the broker is away) the
ticket is issued from a number block the coordinator leased to this dispenser in advance,
printed like any other, and replayed through the outbox when the link returns; the
coordinator accepts it with its original time. A coordinator that refuses for storage
(``storage_failed``: its log cannot be written) or because the request came too late to be
answered in time (``expired``) is treated as unreachable. The taxpayer cannot tell the
difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.health import Health, report_link_health
from edge.leases import LeaseBook, NotDurable
from firmware_bridge.devices import TicketPrinter
from firmware_bridge.devices.escpos import CHINESE_OFF, CHINESE_ON, CUT, INIT, Ticket, text
from firmware_bridge.devices.id_reader import IdCard, IdCardRejected
from firmware_bridge.devices.keypad import ServiceKey
from firmware_bridge.devices.scanner import Scan
from hallq import messages as m
from hallq.aio import backoff_delay, cancel_and_wait
from hallq.bus import Incoming, Session
from hallq.config import Agent, HallConfig
from hallq.errors import NotConnected, RequestTimeout

log = logging.getLogger("hallq.edge.dispenser")

FAULTS = frozenset({"paper_out", "cover_open", "error", "offline"})
PENDING_S = 30.0  # a scanned code or a swiped card applies to the next key press only this long
# refusals that say "not issued, and not because of this request": print from the lease
# (its log cannot be written; the request reached it too late to be answered in time)
NOT_DONE = frozenset({"storage_failed", "expired"})
# a replay refused for one of these is held and sent again: a supervisor suspended this
# dispenser's login (coordinator.suspension) after it printed the ticket offline, and the
# person holding it joins the queue once the dispenser is resumed; or more came at once
# than a kiosk prints (coordinator.authz: replay_paced), and they go in at that pace
REPLAY_HELD = NOT_DONE | {"device_suspended", "replay_paced"}
# an unanswered replay is sent again after this long at first, then less often up to the cap
REPLAY_RETRY_S = (1.0, 15.0)
# printed beside the service on a guide's ticket: the holder shows it at the window
PRIORITY_ZH = {m.Priority.GREEN: "绿色通道", m.Priority.ASSISTED: "导税"}


@dataclass
class Issued:
    """What happened to one key press (for the log and the tests)."""

    number: str | None
    online: bool
    printed: bool
    error: str | None = None


class DispenserAgent:
    def __init__(
        self,
        cfg: HallConfig,
        agent: Agent,
        session: Session,
        leases: LeaseBook,
        printer: TicketPrinter | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.agent = agent
        self.session = session
        self.leases = leases
        self.printer = printer
        self.clock = clock
        self.health = Health(session)
        self.services = cfg.services_for_agent(agent.id)
        # a guide's keypad issues its class of ticket (the coordinator checks the agent may)
        self.key_priority = {
            dev.id: m.Priority(p) for dev in agent.devices if (p := getattr(dev, "priority", None))
        }
        self.queues: dict[str, m.QueueState] = {}
        self.issued: list[Issued] = []
        self._appointment: tuple[str, float] | None = None
        self._identity: tuple[str, float] | None = None
        self._lock = asyncio.Lock()
        self._leasing = asyncio.Lock()
        self.req_topic = session.topics.req(agent.id)
        self._replaying: asyncio.Task[None] | None = None
        self._replay_due = asyncio.Event()
        self._closed = False
        if leases.unwritable is not None:  # said in the log by the book
            self.health.set("leases", False, m.NOT_WRITABLE, leases.unwritable, quiet=True)

    async def close(self) -> None:
        """Stop delivering replays (they stay on disk for the next start). The session
        outlives this by its own shutdown: a (re)connect meanwhile starts nothing that
        would use the lease book, which the agent closes next."""
        self._closed = True
        if self._replaying is not None:
            await cancel_and_wait(self._replaying)

    async def start(self) -> None:
        for code in self.services:
            await self.session.subscribe(self.session.topics.queue_state(code), self._on_queue)
        self.session.on_connect(self._on_connect)

    async def _on_connect(self) -> None:
        await self.health.publish()
        self.deliver_replays()
        await self.top_up_leases()

    def deliver_replays(self, *, at_once: bool = True) -> None:
        """Make sure the offline tickets not yet answered reach the coordinator: one task
        sends them again and again until each is answered. Neither the outbox nor the
        broker's acknowledgement proves the coordinator has a ticket: a broker killed
        before it saved the message loses it, and one that restarts empty drops what
        arrives before the coordinator has subscribed again. A printed ticket that never
        reaches the log is a taxpayer nobody calls, so this does not wait for the next key
        press or reconnect to try again. ``at_once=False``: the first try after the first
        retry delay (a replay just queued in the outbox usually needs none)."""
        if self._closed:
            return
        if at_once:
            self._replay_due.set()
        if self._replaying is None or self._replaying.done():
            self._replaying = asyncio.create_task(
                self._replay_until_answered(), name=f"{self.agent.id} replays"
            )

    async def replays_answered(self) -> None:
        """Return once every offline ticket held has been answered (the fault bench)."""
        if self.leases.unanswered():
            self.deliver_replays()
        while self._replaying is not None and not self._replaying.done():
            await asyncio.wait({self._replaying})

    async def _replay_until_answered(self) -> None:
        attempt = 0
        while True:
            if self._replay_due.is_set():
                self._replay_due.clear()
                try:
                    if await self.confirm_replays() and not self.leases.unanswered():
                        return  # (one held while the last reply was awaited is not missed)
                except Exception:  # a broken state file: keep trying, never end silently
                    log.exception("%s: replaying offline tickets failed", self.agent.id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff_delay(attempt, *REPLAY_RETRY_S)):
                    await self._replay_due.wait()  # a reconnect, or at_once
            attempt = 0 if self._replay_due.is_set() else attempt + 1
            self._replay_due.set()

    async def confirm_replays(self) -> bool:
        """Send again every offline ticket the coordinator has not answered (same id: a
        replay it has logged is answered from its log); True once each has its reply. A
        reply that it could not keep the ticket (``storage_failed``) is no answer: this
        copy expires at the broker, so the replay stays held and is sent again."""
        for payload in self.leases.unanswered():
            replay = m.decode(m.IssueRequest, payload)
            number = replay.offline.number if replay.offline else replay.id
            try:
                reply = await self.session.request(
                    self.req_topic, replay, timeout=self.cfg.edge.command_timeout_s
                )
            except (RequestTimeout, NotConnected) as exc:
                log.info("%s: replay of %s not answered yet: %s", self.agent.id, number, exc)
                return False
            if not reply.ok and reply.error is not None and reply.error.code in REPLAY_HELD:
                log.info(
                    "%s: replay of %s not kept yet: %s", self.agent.id, number, reply.error.code
                )
                return False
            self.leases.replayed(replay.id)
        return True

    def _on_queue(self, incoming: Incoming) -> None:
        self.queues[incoming.payload.service] = incoming.payload

    # --- leases --------------------------------------------------------------------------

    def day(self) -> dt.date:
        return self.cfg.hall.business_day(self.clock())

    async def top_up_leases(self) -> None:
        """Keep at least the low-water mark of leased numbers per service, for the next outage."""
        if self._closed:
            return
        edge = self.cfg.edge
        if self.leases.unwritable is not None:
            return  # numbers it could not hand out (NotDurable): left to the others
        async with self._leasing:
            today = self.day().isoformat()
            self.leases.forget_before(today)
            for code in self.services:
                if self.leases.remaining(today, code) > edge.lease_low_water:
                    continue
                request = m.LeaseRequest(kind="lease", service=code, size=edge.lease_size)
                try:
                    reply = await self.session.request(
                        self.req_topic, request, timeout=edge.command_timeout_s
                    )
                except (RequestTimeout, NotConnected) as exc:
                    log.info("%s: no lease for %s yet: %s", self.agent.id, code, exc)
                    return
                if reply.ok and reply.first and reply.last and reply.day:
                    self.leases.add_block(reply.day.isoformat(), code, reply.first, reply.last)
                    log.info(
                        "%s: leased %s %d-%d for %s",
                        self.agent.id,
                        code,
                        reply.first,
                        reply.last,
                        reply.day,
                    )
                elif reply.error is not None:
                    # (lease_not_needed: it holds enough by the coordinator's count, which
                    # knows an offline ticket once its replay is in; asked again next check)
                    quiet = reply.error.code == "lease_not_needed"
                    log.log(
                        logging.INFO if quiet else logging.WARNING,
                        "%s: lease for %s refused: %s",
                        self.agent.id,
                        code,
                        reply.error.message,
                    )

    # --- device events ---------------------------------------------------------------------

    async def handle(self, update: Any) -> None:
        if isinstance(update, ServiceKey):
            await self.issue(update.service, self.key_priority.get(update.device))
        elif isinstance(update, Scan):
            self._appointment = (update.text.strip().upper(), self.clock())
        elif isinstance(update, IdCard):
            self._identity = (update.id_hash, self.clock())
        elif isinstance(update, IdCardRejected):
            await self.health.update(update.device, False, "card_misread", update.reason)
        else:
            await report_link_health(self.health, update)

    def _pending(self, slot: tuple[str, float] | None) -> str | None:
        if slot is None or self.clock() - slot[1] > PENDING_S:
            return None
        return slot[0]

    async def issue(self, service: str, priority: m.Priority | None = None) -> Issued:
        """One key press: exactly one printed ticket, or a printed notice saying why not."""
        async with self._lock:
            appointment = self._pending(self._appointment)
            identity = self._pending(self._identity)
            self._appointment = self._identity = None
            request = m.IssueRequest(
                kind="issue",
                service=service,
                priority=priority or m.Priority.NORMAL,
                identity=identity,
                appointment=appointment
                if appointment and 4 <= len(appointment) <= 16 and appointment.isalnum()
                else None,
            )
            try:
                reply = await self.session.request(
                    self.req_topic, request, timeout=self.cfg.edge.reply_timeout_s
                )
            except (RequestTimeout, NotConnected) as exc:
                log.info("%s: coordinator not answering (%s): issuing offline", self.agent.id, exc)
                result = await self._issue_offline(service, request)
            else:
                if not reply.ok and reply.error is not None and reply.error.code in NOT_DONE:
                    log.warning(
                        "%s: coordinator did not issue (%s): issuing offline",
                        self.agent.id,
                        reply.error.code,
                    )
                    result = await self._issue_offline(service, request)
                else:
                    result = await self._issue_online(reply, request.priority)
            self.issued.append(result)
        if not result.online:
            if result.printed:
                self.deliver_replays(at_once=False)
            await self.top_up_leases()
        elif self.leases.unanswered():  # the coordinator is back: replays it may not have
            self.deliver_replays()
        return result

    async def _issue_online(self, reply: m.IssueReply, asked: m.Priority) -> Issued:
        """Print the ticket the coordinator issued; a guide's key's class is printed as
        asked (a green-channel service's own tickets need no badge: its name says so)."""
        if not reply.ok or reply.ticket is None:
            message = reply.error.message if reply.error else "无法取号"
            await self._print_notice(message)
            return Issued(None, True, False, reply.error.code if reply.error else "refused")
        info = reply.ticket
        printed = await self._print(
            info.service,
            info.number,
            info.people_ahead,
            round(info.eta_min),
            info.issued_at,
            info.wait.zh(dash="-") if info.wait else None,
            asked,
        )
        if not printed:
            void = m.VoidRequest(kind="void", number=info.number, reason="ticket not printed")
            await self.session.publish(self.req_topic, void, queue=True)
        return Issued(info.number, True, printed)

    async def _issue_offline(self, service_code: str, online: m.IssueRequest) -> Issued:
        """The ticket ``online`` asked for, from a leased number; its replay supersedes it."""
        service = self.cfg.service(service_code)
        now = self.clock()
        try:
            n = self.leases.take(self.day().isoformat(), service_code)
        except NotDurable as exc:
            await self.health.update("leases", False, m.NOT_WRITABLE, str(exc), quiet=True)
            await self._print_notice("本机暂停取号，请到其他取号机取号")
            return Issued(None, False, False, "leases_not_writable")
        if n is None:
            await self.health.update("leases", False, "exhausted", f"no leased {service_code}")
            await self._print_notice("系统忙，请稍后再取号")
            return Issued(None, False, False, "no_lease")
        number = f"{service.prefix}{n:0{service.width}d}"
        queue = self.queues.get(service_code)
        ahead = queue.waiting if queue else 0
        eta = round(queue.eta_min) if queue and queue.eta_min is not None else None
        wait = queue.wait.zh(dash="-") if queue and queue.wait else None
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC)
        priority = online.priority
        printed = await self._print(service_code, number, ahead, eta, issued_at, wait, priority)
        if printed:
            replay = m.IssueRequest(
                kind="issue",
                service=service_code,
                priority=priority,
                offline=m.OfflineIssue(number=number, issued_at=issued_at, supersedes=online.id),
            )
            self.leases.hold_replay(replay.id, self.day().isoformat(), m.encode(replay).decode())
            await self.session.publish(self.req_topic, replay, queue=True)
            log.info("%s: issued %s offline; queued for replay", self.agent.id, number)
        return Issued(number, False, printed)

    async def _print(
        self,
        service_code: str,
        number: str,
        ahead: int,
        eta: int | None,
        issued_at: dt.datetime,
        wait: str | None = None,
        priority: m.Priority = m.Priority.NORMAL,
    ) -> bool:
        if self.printer is None:
            return True
        ticket = Ticket(
            hall=self.cfg.hall.name,
            service=self.cfg.service(service_code).name,
            badge=PRIORITY_ZH.get(priority),
            number=number,
            people_ahead=ahead,
            wait_minutes=eta,
            wait_text=wait,
            issued_at=issued_at.astimezone(self.cfg.hall.tzinfo),
            status_url=self.cfg.hall.ticket_url(number),
        )
        result = await self.printer.print_ticket(ticket)
        status = str(result.status.condition)
        await self.health.update(
            self.printer.device,
            result.done and status not in FAULTS,
            status,
            result.reason if not result.done else None,
        )
        if not result.done:
            log.warning("%s: ticket %s not printed: %s", self.agent.id, number, result.reason)
        return result.done

    async def _print_notice(self, message: str) -> None:
        if self.printer is None:
            return
        data = b"".join(
            [INIT, CHINESE_ON, text(self.cfg.hall.name), text(message), CHINESE_OFF, CUT]
        )
        await self.printer.print_bytes(data)

    async def poll_printer(self) -> None:
        if self.printer is None:
            return
        condition = str((await self.printer.status()).condition)
        await self.health.update(self.printer.device, condition not in FAULTS, condition)
