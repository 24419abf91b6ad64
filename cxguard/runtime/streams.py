"""Choose the protocol core for a route, and pin the tenant proven at the upgrade."""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol, cast

from cxguard.errors import ProtocolError
from cxguard.model import CallStarted, ProtocolEvent, Speaker
from cxguard.protocols.audiohook import AudioHookOptions, AudioHookSession
from cxguard.protocols.twilio import TwilioOptions, TwilioStream
from cxguard.runtime.auth import Admission
from cxguard.runtime.settings import Settings

log = logging.getLogger(__name__)


class _Core(Protocol):
    def receive_text(self, text: str) -> None: ...
    def receive_bytes(self, data: bytes) -> None: ...
    def events_received(self) -> list[ProtocolEvent]: ...


class PinnedStream:
    """Wraps a protocol core; a tenant proven by signature overrides what the stream claims."""

    def __init__(self, inner: _Core, tenant: str | None) -> None:
        self.inner = inner
        self._tenant = tenant

    def receive_text(self, text: str) -> None:
        self.inner.receive_text(text)

    def receive_bytes(self, data: bytes) -> None:
        self.inner.receive_bytes(data)

    def receive_eof(self) -> None:
        eof = getattr(self.inner, "receive_eof", None)
        if eof is not None:
            eof()

    def events_received(self) -> list[ProtocolEvent]:
        events = self.inner.events_received()
        if self._tenant is None:
            return events
        return [self._pin(e) if isinstance(e, CallStarted) else e for e in events]

    def _pin(self, started: CallStarted) -> CallStarted:
        claimed = started.info.tenant
        tenant = cast(str, self._tenant)
        if claimed not in (tenant, "default"):
            log.warning(
                "call %s claims tenant %r but signed as %r; using %r",
                started.info.call_id,
                claimed,
                tenant,
                tenant,
            )
        return dataclasses.replace(started, info=dataclasses.replace(started.info, tenant=tenant))

    def data_to_send(self) -> list[str]:
        send = getattr(self.inner, "data_to_send", None)
        return list(send()) if send else []

    @property
    def awaits_close(self) -> bool:
        """AudioHook: after a fatal error the client is expected to send ``close``."""
        return isinstance(self.inner, AudioHookSession) and not self.inner.closed


def open_stream(protocol: str, settings: Settings, admission: Admission) -> PinnedStream:
    if protocol == "twilio":
        options = TwilioOptions(
            inbound_speaker=cast(Speaker, settings.twilio_track_inbound),
            outbound_speaker=cast(Speaker, settings.twilio_track_outbound),
            default_tenant=settings.default_tenant,
            max_message_bytes=settings.max_message_bytes,
        )
        return PinnedStream(TwilioStream(options), admission.tenant)
    if protocol == "audiohook":
        ah = AudioHookOptions(
            tenant=admission.tenant or settings.default_tenant,
            max_message_bytes=settings.max_message_bytes,
        )
        session = AudioHookSession(
            ah, organization_id=admission.organization_id, session_id=admission.session_id
        )
        return PinnedStream(session, admission.tenant)
    raise ProtocolError(f"no protocol {protocol!r}", close_code=1008)
