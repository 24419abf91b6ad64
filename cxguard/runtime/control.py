"""The control API: trusted mid-call facts for a live call, from any platform.

``POST /calls/{call_id}/events`` (body: :mod:`cxguard.protocols.control_api`) on the serve
port, behind the ``control`` door (a tenant's ``control_token``). A Twilio
``<Start><Stream>`` is one-way and a ``/stream`` fork may carry no control messages, so this
is how "the caller is now authenticated" or "the intent changed" reaches such a call.

Each fact becomes the same :class:`~cxguard.model.ControlEvent` a stream's own control
message would (``source: control_api`` in its data), stamped with the call's stream
position when the request arrives and queued behind everything the stream delivered so far:
it takes effect in stream order, like a mark at that point of the audio (a non-handoff fact
waits for the turn being spoken to end). It is recorded as evidence (``control.<name>``,
redacted as every event is) by the call's own pipeline.

A call is found by (tenant, call id) among the streams open on *this* sidecar; another
tenant's call answers exactly like an unknown one (404), so a token learns nothing about
calls it may not touch. With no control tokens configured the door is open on loopback only
(development) and finds a call id in any tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from cxguard.errors import ControlRequestError
from cxguard.protocols.control_api import call_id_of, parse_facts
from cxguard.protocols.controls import INVALID, control_event
from cxguard.runtime.session import CallSession

log = logging.getLogger(__name__)

SOURCE = "control_api"


class LiveCalls:
    """The calls whose streams are open on this sidecar, by (tenant, call id)."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], CallSession] = {}

    def add(self, session: CallSession) -> None:
        # A second stream of the same call (a reconnect) takes over from the first.
        self._calls[(session.info.tenant, session.info.call_id)] = session

    def remove(self, session: CallSession) -> None:
        key = (session.info.tenant, session.info.call_id)
        if self._calls.get(key) is session:
            del self._calls[key]

    def find(self, tenant: str | None, call_id: str) -> CallSession | None:
        """``tenant`` None (an open door): the one live call with that id in any tenant."""
        if tenant is not None:
            return self._calls.get((tenant, call_id))
        found = [s for (_, c), s in self._calls.items() if c == call_id]
        return found[0] if len(found) == 1 else None

    def __iter__(self) -> Iterator[CallSession]:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)


def post_events(
    calls: LiveCalls, tenant: str | None, method: str, path: str, body: bytes
) -> dict[str, Any]:
    """Apply one control-API request (its credential already proved ``tenant``); the JSON
    answer. Raises :class:`ControlRequestError` with the HTTP status of a refusal."""
    call_id = call_id_of(path)
    if call_id is None:
        raise ControlRequestError("no such route", 404)
    if method != "POST":
        raise ControlRequestError(f"{method} not allowed; use POST", 405)
    facts = parse_facts(body)
    session = calls.find(tenant, call_id)
    if session is None or session.ended:
        raise ControlRequestError("no such live call", 404)
    at_ms = session.position_ms
    applied = []
    for fact in facts:
        event = control_event(fact.name, fact.value, at_ms)
        if event.name == INVALID:  # parse_facts admits only what control_event takes
            raise ControlRequestError(str(event.data.get("reason", "invalid fact")))
        applied.append(replace(event, data={**event.data, "source": SOURCE}))
    for event in applied:
        session.signal(event)
    names = [e.name for e in applied]
    log.info(
        "call %s (tenant %s): %s at %.0f ms from the control API",
        session.info.call_id,
        session.info.tenant,
        ", ".join(names),
        at_ms,
    )
    return {"call_id": call_id, "tenant": session.info.tenant, "at_ms": at_ms, "applied": names}
