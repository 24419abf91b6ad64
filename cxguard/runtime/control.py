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
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from cxguard.errors import ControlRequestError
from cxguard.protocols.control_api import call_id_of, parse_request
from cxguard.protocols.controls import INVALID, control_event
from cxguard.runtime.session import CallSession

log = logging.getLogger(__name__)

SOURCE = "control_api"
MAX_REMEMBERED_IDS = 1024
"""Request ids remembered per call (a retry comes soon after the first try)."""


class LiveCalls:
    """The calls whose streams are open on this sidecar, by (tenant, call id)."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], CallSession] = {}
        self._seen: weakref.WeakKeyDictionary[CallSession, OrderedDict[str, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def answered(self, session: CallSession, request_id: str) -> dict[str, Any] | None:
        """The answer already given to ``request_id`` for this call (None: a new id)."""
        return self._seen.get(session, OrderedDict()).get(request_id)

    def remember(self, session: CallSession, request_id: str, answer: dict[str, Any]) -> None:
        seen = self._seen.setdefault(session, OrderedDict())
        seen[request_id] = answer
        while len(seen) > MAX_REMEMBERED_IDS:
            seen.popitem(last=False)

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
    request = parse_request(body)
    session = calls.find(tenant, call_id)
    if session is None or session.ended:
        raise ControlRequestError("no such live call", 404)
    if request.request_id is not None:
        earlier = calls.answered(session, request.request_id)
        if earlier is not None:  # a retry: applied once already
            return {**earlier, "duplicate": True}
    at_ms = session.position_ms
    applied = []
    for fact in request.facts:
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
    answer = {"call_id": call_id, "tenant": session.info.tenant, "at_ms": at_ms, "applied": names}
    if request.request_id is not None:
        calls.remember(session, request.request_id, answer)
    return answer
