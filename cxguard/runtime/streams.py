"""Choose the protocol core for a route, configured from settings and the proven upgrade.

Every core follows :class:`cxguard.protocols.base.MediaStream`, so the server drives them
all the same way. A tenant proven by the upgrade's signature is passed in and wins over
whatever the stream later claims.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, cast

from cxguard.model import Speaker
from cxguard.protocols.audiohook import AudioHookOptions, AudioHookSession
from cxguard.protocols.base import MediaStream
from cxguard.protocols.stream import GenericStream, StreamOptions
from cxguard.protocols.twilio import TwilioOptions, TwilioStream
from cxguard.runtime.auth import Admission
from cxguard.runtime.settings import Settings


def _twilio(settings: Settings, admission: Admission) -> MediaStream:
    options = TwilioOptions(
        inbound_speaker=cast(Speaker, settings.twilio_track_inbound),
        outbound_speaker=cast(Speaker, settings.twilio_track_outbound),
        default_tenant=settings.default_tenant,
        tenant=admission.tenant,
        max_message_bytes=settings.max_message_bytes,
        caller_id_key=_key(settings),
    )
    return TwilioStream(options)


def _audiohook(settings: Settings, admission: Admission) -> MediaStream:
    options = AudioHookOptions(
        tenant=admission.tenant or settings.default_tenant,
        max_message_bytes=settings.max_message_bytes,
        caller_id_key=_key(settings),
        supported_languages=settings.audiohook.supported_languages,
    )
    return AudioHookSession(
        options, organization_id=admission.organization_id, session_id=admission.session_id
    )


def _stream(settings: Settings, admission: Admission) -> MediaStream:
    options = StreamOptions(
        default_tenant=settings.default_tenant,
        tenant=admission.tenant,
        max_message_bytes=settings.max_message_bytes,
        caller_id_key=_key(settings),
    )
    return GenericStream(options)


def _key(settings: Settings) -> bytes | None:
    return settings.caller_id_key.encode("utf-8") if settings.caller_id_key else None


PROTOCOLS: Final[dict[str, Callable[[Settings, Admission], MediaStream]]] = {
    "twilio": _twilio,
    "audiohook": _audiohook,
    "stream": _stream,
}
"""Route name (the URL path without ``/``) → protocol core."""


def open_stream(protocol: str, settings: Settings, admission: Admission) -> MediaStream:
    """The core for ``protocol`` (a key of :data:`PROTOCOLS`; KeyError otherwise)."""
    return PROTOCOLS[protocol](settings, admission)
