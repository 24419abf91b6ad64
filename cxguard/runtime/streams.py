"""Choose the protocol core for a route, and pin the tenant proven at the upgrade."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import cast

from cxguard.errors import ProtocolError
from cxguard.model import CallStarted, ProtocolEvent, Speaker
from cxguard.protocols.twilio import TwilioOptions, TwilioStream
from cxguard.runtime.settings import Settings

log = logging.getLogger(__name__)


class PinnedStream:
    """Wraps a protocol core; a tenant proven by signature overrides what the stream claims."""

    def __init__(self, inner: TwilioStream, tenant: str | None) -> None:
        self._inner = inner
        self._tenant = tenant

    def receive_text(self, text: str) -> None:
        self._inner.receive_text(text)

    def receive_bytes(self, data: bytes) -> None:
        self._inner.receive_bytes(data)

    def events_received(self) -> list[ProtocolEvent]:
        events = self._inner.events_received()
        if self._tenant is None:
            return events
        return [self._pin(e) if isinstance(e, CallStarted) else e for e in events]

    def _pin(self, started: CallStarted) -> CallStarted:
        claimed = started.info.tenant
        if claimed != self._tenant and claimed != "default":
            log.warning("call %s claims tenant %r but signed as %r; using %r",
                        started.info.call_id, claimed, self._tenant, self._tenant)
        info = dataclasses.replace(started.info, tenant=cast(str, self._tenant))
        return dataclasses.replace(started, info=info)

    def data_to_send(self) -> list[str]:
        send = getattr(self._inner, "data_to_send", None)
        return list(send()) if send else []


def open_stream(protocol: str, settings: Settings, tenant: str | None,
                headers: Mapping[str, str]) -> PinnedStream:
    if protocol == "twilio":
        options = TwilioOptions(
            inbound_speaker=cast(Speaker, settings.twilio_track_inbound),
            outbound_speaker=cast(Speaker, settings.twilio_track_outbound),
            default_tenant=settings.default_tenant,
            max_message_bytes=settings.max_message_bytes,
        )
        return PinnedStream(TwilioStream(options), tenant)
    raise ProtocolError(f"no protocol {protocol!r}", close_code=1008)
