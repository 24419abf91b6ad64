"""The console's live feed: facts from the running services folded into each tenant's view
(:mod:`cxguard.runtime.console.state`) and pushed to that tenant's open pages, never another's.

Where the facts come from:

* **alerts**: the console is an outbox sink (:meth:`ConsoleHub.route`), so it sees exactly
  the durable alert stream every other sink sees, deduplicated by alert id; on load, the
  outbox's recent rows of this sink are the history (they survive a restart);
* **calls, controls, handoffs, acknowledgements**: every call event as the evidence writer
  records it (``EvidenceWriter.observers``); on load, the ledger's recent calls and events;
* **transcripts**: each speaker turn as judged (``Services.listeners``), already redacted;
* **speaking**: the VAD's state at each stream tick (``Services.speaking_listeners``);
* **rates**: per-assertion outcomes of the last hour and day, from the ledger;
* **other sidecars' alerts and handoffs**: their tenant's Redis streams, when ``redis_url`` is
  set (:mod:`cxguard.runtime.console.follow`).

Supervisors' acknowledgements, assignments and comments are call events
(``console.acknowledge`` / ``.assign`` / ``.comment``) on the alert's call chain: hash-chained,
exported and verified like every other row of the call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cxguard import pii
from cxguard.errors import SinkError
from cxguard.evidence.rows import CONSOLE_ACTION_KINDS
from cxguard.model import CallInfo, Speaker, TurnText, Verdict
from cxguard.runtime.console import history
from cxguard.runtime.console.follow import RedisFollower
from cxguard.runtime.console.state import TenantView, Update
from cxguard.sinks.messages import OutboxMessage
from cxguard.sinks.outbox import Outbox, Route

log = logging.getLogger(__name__)

SINK_NAME = "live-console"
RATES_EVERY_S = 2.0
QUEUE_SIZE = 2000
ACTIONS = tuple(k.removeprefix("console.") for k in CONSOLE_ACTION_KINDS)
"""What a supervisor may do with an alert; each is recorded as ``console.<action>``."""


class ConsoleSink:
    """The outbox's view of the console: alerts, delivered into the hub."""

    name = SINK_NAME

    def __init__(self, hub: ConsoleHub) -> None:
        self._hub = hub

    def accepts(self, message: OutboxMessage) -> bool:
        return message.kind == "alert"

    async def deliver(self, message: OutboxMessage) -> None:
        self._hub.publish(message.tenant, self._hub.view(message.tenant).on_alert(message.data()))

    async def close(self) -> None:
        return None


class Subscriber:
    """One open page: a bounded queue; a page that cannot keep up is closed (it reloads)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue[Update | None] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def put(self, update: Update) -> None:
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue.get_nowait()
            self.queue.put_nowait(None)


class ConsoleHub:
    def __init__(self) -> None:
        self._views: dict[str, TenantView] = {}
        self._subscribers: set[Subscriber] = set()
        self._services: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._rates: dict[str, tuple[float, dict[str, Any]]] = {}
        self._rates_pending: set[str] = set()
        self._history_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._follower: RedisFollower | None = None

    def route(self) -> Route:
        # Delivery states are not recorded: the console is this process's own memory.
        return Route(ConsoleSink(self), kinds=frozenset({"alert"}), record=False)

    def attach(self, services: Any) -> None:
        """Listen to ``services`` (a :class:`~cxguard.runtime.services.Services`)."""
        self._services = services
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        services.listeners.append(self._on_turn)
        services.speaking_listeners.append(self._on_speaking)
        services.evidence.observers.append(self._on_event)
        if services.settings.redis_url:
            self._follower = RedisFollower(self, services.settings.redis_url)
            self._follower.start()

    def follow(self, follower: RedisFollower) -> None:
        """Read other sidecars' alerts through ``follower`` (started here)."""
        self._follower = follower
        follower.start()

    async def close(self) -> None:
        if self._follower is not None:
            await self._follower.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def view(self, tenant: str) -> TenantView:
        found = self._views.get(tenant)
        if found is None:
            found = self._views[tenant] = TenantView(tenant)
        return found

    # ------------------------------------------------------------------ pushing

    def subscribe(self, tenant: str) -> Subscriber:
        sub = Subscriber(tenant)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, tenant: str, update: Update | None) -> None:
        if update is None:
            return
        for sub in list(self._subscribers):
            if sub.tenant == tenant:  # the one rule: a page sees its own tenant only
                sub.put(update)

    def _on_loop(self, fn: Any, *args: Any) -> None:
        if self._loop is None or threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ facts in

    def _on_event(
        self, info: CallInfo, kind: str, at_ms: float | None, data: Mapping[str, Any]
    ) -> None:
        self._on_loop(self._event, info.tenant, info.call_id, info.source, kind, dict(data))

    def _event(
        self, tenant: str, call_id: str, source: str, kind: str, data: dict[str, Any]
    ) -> None:
        view, now = self.view(tenant), time.time()
        update: Update | None = None
        if kind == "call_started":
            update = view.on_call_started(call_id, source, now, data)
        elif kind in ("call_ended", "call_interrupted"):
            update = view.on_call_ended(call_id, now, data.get("reason"))
            self._rates_due(tenant)
        elif kind.startswith("control."):
            update = view.on_control(call_id, kind.removeprefix("control."), data)
        elif kind.startswith("handoff."):
            update = view.on_handoff(call_id, kind, data, now)
        self.publish(tenant, update)

    def alert_from_stream(self, tenant: str, data: dict[str, Any]) -> None:
        self.publish(tenant, self.view(tenant).on_alert(data))

    def handoff_from_stream(self, tenant: str, data: dict[str, Any]) -> None:
        view, call_id = self.view(tenant), str(data.get("call_id", ""))
        known = str(data.get("idempotency_key", "")) in view.handoffs
        if call_id and not known:  # another sidecar's: its delivery states are its own
            update = view.on_handoff(
                call_id,
                "handoff.requested",
                {"assertion": data.get("assertion_id"), "key": data.get("idempotency_key")},
                float(data.get("requested_at_wall") or time.time()),
            )
            self.publish(tenant, update)

    def _on_speaking(self, info: CallInfo, speaking: Mapping[Speaker, float | None]) -> None:
        now = tuple(sorted(s for s, started in speaking.items() if started is not None))
        self.publish(info.tenant, self.view(info.tenant).on_speaking(info.call_id, now))

    def _on_turn(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        if text is not None:
            outcomes: dict[str, list[str]] = {}
            for v in verdicts:
                if v.turn_index == text.index and v.outcome in ("fail", "undetermined"):
                    outcomes.setdefault(v.outcome, []).append(v.assertion_id)
            turn = {
                "index": text.index,
                "speaker": text.speaker,
                "text": pii.redact(text.text),
                "start_ms": text.start_ms,
                "end_ms": text.end_ms,
                "undetermined_reason": text.undetermined_reason,
                "outcomes": outcomes,
            }
            self.publish(info.tenant, self.view(info.tenant).on_turn(info.call_id, turn))
        if verdicts:
            self._rates_due(info.tenant)

    # ------------------------------------------------------------------ supervisors' actions

    async def act(
        self,
        tenant: str,
        alert_id: str,
        action: str,
        by: str,
        note: str = "",
        assignee: str = "",
    ) -> dict[str, Any]:
        """Record what a supervisor did about one of ``tenant``'s alerts as a ledger event on
        the alert's call; returns the recorded action. Raises SinkError for an alert the
        tenant does not have or an unknown action."""
        if action not in ACTIONS:
            raise SinkError(f"unknown action {action!r}")
        alert = self.view(tenant).alerts.get(alert_id)
        if alert is None:
            raise SinkError("no such alert")
        record = {
            "action_id": uuid.uuid4().hex,
            "action": action,
            "alert_id": alert_id,
            "assertion": alert.get("assertion"),
            "turn": alert.get("turn"),
            "by": pii.redact(by.strip()[:80]) or "unnamed supervisor",
            "via": "console",
            "at_wall": time.time(),
            "note": pii.redact(note.strip()[:1000]),
            "assignee": pii.redact(assignee.strip()[:80]),
        }
        info = CallInfo(str(alert["call_id"]), tenant, "offline")
        # Durable in the spool (then the ledger) before any page is told it is done.
        await self._services.evidence.event(info, f"console.{action}", None, record, strict=True)
        self.publish(tenant, self.view(tenant).on_action(record))
        return record

    # ------------------------------------------------------------------ on load

    async def snapshot(self, tenant: str) -> dict[str, Any]:
        await self._load_history(tenant)
        snap = self.view(tenant).snapshot()
        snap["rates"] = await self.rates(tenant)
        return snap

    async def _load_history(self, tenant: str) -> None:
        view = self.view(tenant)
        lock = self._history_locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            if view.history_loaded:
                return
            if self._follower is not None:
                await self._follower.backfill(tenant)
            if self._services is None:
                view.history_loaded = True
                return
            outbox: Outbox = self._services.outbox
            try:
                messages = await outbox.recent(SINK_NAME, tenant, 200)
            except SinkError as exc:
                log.error("console: recent alerts unreadable: %s", exc)
                messages = []
            for m in reversed(messages):
                view.on_alert(m.data())
            try:
                ledger = self._services.evidence.ledger
                calls, turns, events = await asyncio.to_thread(history.read, ledger, tenant)
            except Exception as exc:  # the ledger may be down: live data still flows
                log.error("console: history of tenant %s unreadable: %s", tenant, exc)
                return
            history.fold(view, calls, turns, events)
            view.history_loaded = True

    # ------------------------------------------------------------------ rates

    async def rates(self, tenant: str) -> dict[str, Any]:
        if self._services is None:
            return {"hour": {}, "day": {}, "drift": []}
        cached = self._rates.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < RATES_EVERY_S:
            return cached[1]
        try:
            ledger = self._services.evidence.ledger
            rates = await asyncio.to_thread(history.rates, ledger, tenant)
        except Exception as exc:
            log.error("console: rates of tenant %s unreadable: %s", tenant, exc)
            return cached[1] if cached else {"hour": {}, "day": {}, "drift": [], "error": True}
        self._rates[tenant] = (time.monotonic(), rates)
        return rates

    def _rates_due(self, tenant: str) -> None:
        """Refresh a tenant's rates soon (at most every RATES_EVERY_S) if a page is open."""
        if tenant in self._rates_pending or self._loop is None:
            return
        if not any(s.tenant == tenant for s in self._subscribers):
            self._rates.pop(tenant, None)
            return
        self._rates_pending.add(tenant)

        async def later() -> None:
            try:
                cached = self._rates.get(tenant)
                if cached is not None:
                    await asyncio.sleep(max(0.0, RATES_EVERY_S - (time.monotonic() - cached[0])))
                self._rates.pop(tenant, None)
                rates = await self.rates(tenant)
                self.publish(tenant, {"type": "rates", "rates": rates})
            finally:
                self._rates_pending.discard(tenant)

        task = self._loop.create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def tenants_with_pages(self) -> Sequence[str]:
        return sorted({s.tenant for s in self._subscribers})
