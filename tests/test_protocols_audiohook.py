"""AudioHook v2 session, at the byte/JSON level: frames in, model events and replies out.

The Genesys side is the project's one AudioHook client (``cxguard.simulate.audiohook``),
told not to answer on its own so each test drives every message; violations are recorded
on the session (``error``, ``close``, a ``disconnect`` queued), never raised.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from cxguard.errors import AudioHookProtocolError, ConfigError
from cxguard.model import AudioChunk, CallEnded, CallInfo, CallStarted, ControlEvent, Gap
from cxguard.protocols import audiohook_messages as wire
from cxguard.protocols.audiohook import AudioHookOptions, AudioHookSession
from cxguard.protocols.audiohook_messages import NULL_UUID, media_offer
from cxguard.protocols.base import Close, CloseCode
from cxguard.protocols.caller_id import HASH_PREFIX
from cxguard.simulate.audiohook import (
    AudioHookClient,
    close_message,
    discarded_message,
    error_message,
    interleave_stereo,
    open_message,
    paused_message,
    ping_message,
    resumed_message,
    update_message,
)

ORG = "d7934305-0972-4844-938e-9060eef73d05"
SESSION = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
CONVERSATION = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
PARTICIPANT: wire.Participant = {
    "id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0",
    "ani": "+15555550100",
    "aniName": "Pat Doe",
    "dnis": "+15555550199",
}


class Genesys:
    """Wires the AudioHook client to the session under test; every call returns the
    server's replies (parsed). ``g.ping()`` etc. call the client's method of that name."""

    def __init__(self, session: AudioHookSession, **client: Any) -> None:
        self.session = session
        self.client = self._client(**client)
        self.replies: list[dict[str, Any]] = []

    @staticmethod
    def _client(**kwargs: Any) -> AudioHookClient:
        args: dict[str, Any] = {
            "session_id": SESSION,
            "organization_id": ORG,
            "conversation_id": CONVERSATION,
            "participant": PARTICIPANT,
            "answer_server": False,
        }
        return AudioHookClient(**(args | kwargs))

    @property
    def seq(self) -> int:
        return self.client.seq

    def deliver(self) -> list[dict[str, Any]]:
        for frame in self.client.data_to_send():
            if isinstance(frame, bytes):
                self.session.receive_bytes(frame)
            else:
                self.session.receive_text(frame)
        return self.collect()

    def collect(self) -> list[dict[str, Any]]:
        frames = self.session.data_to_send()
        for frame in frames:
            self.client.receive_text(frame)
        replies = [json.loads(frame) for frame in frames]
        self.replies += replies
        return replies

    def open(self, **kwargs: Any) -> dict[str, Any]:
        assert self.client.seq == 0
        self.client = self._client(**kwargs)
        self.client.open()
        (reply,) = self.deliver()
        return reply

    def raw(self, text: str) -> list[dict[str, Any]]:
        """A text frame as is (it does not count in the client's numbering)."""
        self.session.receive_text(text)
        return self.collect()

    def message(self, builder: Callable[..., str], **kwargs: Any) -> list[dict[str, Any]]:
        """A message written by a builder, numbered as the client's next one."""
        kwargs.setdefault("serverseq", self.client.serverseq)
        kwargs.setdefault("position_ms", self.client.position_ms)
        self.client.seq += 1
        return self.raw(builder(SESSION, self.client.seq, **kwargs))

    def audio(self, external: bytes, internal: bytes | None = None) -> None:
        frame = external if internal is None else interleave_stereo(external, internal)
        self.client.send_frame(frame, len(external) / 8)
        self.deliver()

    def __getattr__(self, name: str) -> Callable[..., list[dict[str, Any]]]:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            method(*args, **kwargs)
            return self.deliver()

        return call


DEFAULTS = AudioHookOptions()


def opened(options: AudioHookOptions = DEFAULTS, **open_kwargs: Any) -> Genesys:
    client = Genesys(AudioHookSession(options, organization_id=ORG, session_id=SESSION))
    client.open(**open_kwargs)
    client.session.events_received()
    return client


def expect_failure(
    client: Genesys, action: Callable[[], object], close_code: int, code: int, fragment: str
) -> AudioHookProtocolError:
    action()  # never raises: the violation is recorded
    error = client.session.error
    assert isinstance(error, AudioHookProtocolError)
    assert (error.close_code, error.code) == (close_code, code)
    assert fragment in str(error)
    assert client.session.close == Close(CloseCode(close_code), str(error))
    assert client.session.close_expected() and client.session.awaits_peer()
    disconnects = [r for r in client.replies if r["type"] == "disconnect"]
    disconnects += [r for r in client.collect() if r["type"] == "disconnect"]
    (disconnect,) = disconnects
    reason = "unauthorized" if code == 401 else "error"
    assert disconnect["parameters"] == {"reason": reason, "info": str(error)}
    return error


# --------------------------------------------------------------------------- a whole call


def test_a_whole_stereo_call_at_the_wire_level() -> None:
    session = AudioHookSession(AudioHookOptions(tenant="acme"), organization_id=ORG)
    client = Genesys(session)
    reply = client.open(language="en-US", custom_config={"queue": "billing", "vip": True})
    assert reply == {
        "version": "2",
        "id": SESSION,
        "type": "opened",
        "seq": 1,
        "clientseq": 1,
        "parameters": {"media": [media_offer(("external", "internal"))], "startPaused": False},
    }
    (started,) = session.events_received()
    assert started == CallStarted(
        wire_call_info(tenant="acme", language="en-US", config={"queue": "billing", "vip": "true"}),
        "PCMU",
        8000,
    )
    assert session.conversation_id == CONVERSATION and session.session_id == SESSION

    client.audio(bytes(range(0, 160)), bytes(range(96, 256)))  # 20 ms per channel
    client.audio(b"\x01" * 80, b"\x02" * 80)
    assert session.events_received() == [
        AudioChunk("customer", bytes(range(0, 160)), 0.0),
        AudioChunk("agent", bytes(range(96, 256)), 0.0),
        AudioChunk("customer", b"\x01" * 80, 20.0),
        AudioChunk("agent", b"\x02" * 80, 20.0),
    ]
    assert session.position_ms == 30.0

    (closed,) = client.message(close_message, reason="end")
    assert closed == {
        "version": "2",
        "id": SESSION,
        "type": "closed",
        "seq": 2,
        "clientseq": 2,
        "parameters": {},
    }
    assert session.events_received() == [CallEnded("end", 30.0)]
    assert session.closed and session.state == "closed"
    session.receive_text("after the end")  # ignored once closed
    session.receive_bytes(b"\x00\x00")
    assert session.data_to_send() == [] and session.events_received() == []


def wire_call_info(*, tenant: str, language: str, config: dict[str, str]) -> CallInfo:
    return CallInfo(
        call_id=CONVERSATION,
        tenant=tenant,
        source="audiohook",
        stream_id=SESSION,
        account_sid=ORG,
        parameters=config
        | {
            # the caller's number and name are dropped (no caller_id_key configured)
            "participant.id": PARTICIPANT["id"],
            "participant.dnis": PARTICIPANT["dnis"],
            "organizationId": ORG,
            "channels": "external,internal",
            "language": language,
        },
    )


def test_stereo_deinterleave_is_exact_for_every_byte_value() -> None:
    client = opened()
    external = bytes(range(256)) * 3
    internal = bytes(reversed(range(256))) * 3
    frame = interleave_stereo(external, internal)
    assert frame[:4] == b"\x00\xff\x01\xfe" and len(frame) == 2 * len(external)
    client.session.receive_bytes(frame)
    customer, agent = client.session.events_received()
    assert isinstance(customer, AudioChunk) and isinstance(agent, AudioChunk)
    assert (customer.speaker, customer.payload) == ("customer", external)
    assert (agent.speaker, agent.payload) == ("agent", internal)
    assert client.session.position_ms == len(external) / 8


def test_interleave_stereo_rejects_unequal_channels() -> None:
    with pytest.raises(ValueError, match="differ"):
        interleave_stereo(b"ab", b"c")


def test_custom_config_may_signal_authentication_and_intent() -> None:
    session = AudioHookSession()
    Genesys(session).open(custom_config={"authenticated": "TRUE", "intent": " billing "})
    assert session.events_received()[1:] == [
        ControlEvent("authenticated", 0.0, {}),
        ControlEvent("intent", 0.0, {"intent": "billing"}),
    ]


def test_protocol_facts_override_custom_config_keys() -> None:
    session = AudioHookSession()
    Genesys(session).open(custom_config={"organizationId": "spoofed", "channels": "x"})
    (started, *_) = session.events_received()
    assert isinstance(started, CallStarted)
    assert started.info.parameters["organizationId"] == ORG
    assert started.info.parameters["channels"] == "external,internal"


# --------------------------------------------------------------------------- media negotiation

EXT, INT = media_offer(("external",)), media_offer(("internal",))
STEREO, REVERSED = media_offer(("external", "internal")), media_offer(("internal", "external"))
L16 = {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}
PCMU_16K = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 16000}
L16_16K = {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 16000}
BAD = {"type": "audio", "format": "PCMU", "channels": ["external", "external"], "rate": 8000}


@pytest.mark.parametrize(
    ("offers", "preference", "chosen"),
    [
        ([EXT, INT, STEREO], "agent", ["external", "internal"]),
        ([L16, REVERSED, EXT], "agent", ["external", "internal", "L16"]),  # stereo first
        ([L16, STEREO], "agent", ["external", "internal"]),  # PCMU before L16
        ([L16_16K, EXT], "agent", ["external"]),
        ([EXT, INT], "agent", ["internal"]),
        ([EXT, INT], "customer", ["external"]),
        ([EXT], "agent", ["external"]),
        ([INT], "customer", ["internal"]),
        ([BAD, PCMU_16K, {"junk": 1}, INT], "agent", ["internal"]),
    ],
)
def test_media_choice(offers: list[Any], preference: Any, chosen: list[str]) -> None:
    client = Genesys(AudioHookSession(AudioHookOptions(mono_preference=preference)))
    reply = client.open(media=offers)
    audio_format = chosen.pop() if chosen[-1] == "L16" else "PCMU"
    assert reply["parameters"]["media"] == [media_offer(chosen, audio_format)]  # type: ignore[arg-type]


def test_reversed_stereo_is_deinterleaved_in_its_own_order() -> None:
    client = opened(media=[REVERSED])
    client.session.receive_bytes(interleave_stereo(b"II", b"EE"))
    assert client.session.events_received() == [
        AudioChunk("agent", b"II", 0.0),
        AudioChunk("customer", b"EE", 0.0),
    ]


def test_mono_audio_is_one_chunk_for_that_channel() -> None:
    client = opened(media=[INT])
    client.session.receive_bytes(b"\x7f" * 161)  # odd lengths are fine in mono
    assert client.session.events_received() == [AudioChunk("agent", b"\x7f" * 161, 0.0)]
    assert client.session.position_ms == 20.125


def test_speakers_are_configurable() -> None:
    options = AudioHookOptions(external_speaker="agent", internal_speaker="customer")
    client = opened(options)
    client.audio(b"E", b"I")
    assert [(c.speaker, c.payload) for c in client.session.events_received()] == [  # type: ignore[union-attr]
        ("agent", b"E"),
        ("customer", b"I"),
    ]


def test_options_reject_one_speaker_on_both_channels() -> None:
    with pytest.raises(ConfigError):
        AudioHookOptions(external_speaker="agent", internal_speaker="agent")
    with pytest.raises(ConfigError):
        AudioHookOptions(max_message_bytes=0)


def test_no_pcmu_8k_offer_fails_with_415() -> None:
    client = Genesys(AudioHookSession())
    expect_failure(
        client,
        lambda: client.open(media=[L16_16K, PCMU_16K]),
        1003,
        415,
        "no PCMU or L16 8000 Hz",
    )
    assert client.session.events_received() == []


# --------------------------------------------------------------------------- simple transactions


def test_ping_is_answered_with_pong_echoing_the_client_seq() -> None:
    client = opened()
    (pong,) = client.message(ping_message)
    assert (pong["type"], pong["seq"], pong["clientseq"], pong["parameters"]) == ("pong", 2, 2, {})
    (pong,) = client.message(ping_message, rtt_ms=42.5)
    assert (pong["seq"], pong["clientseq"]) == (3, 3)
    assert client.session.events_received() == []


def test_ping_before_open_is_answered_too() -> None:
    client = Genesys(AudioHookSession())
    (pong,) = client.message(ping_message)
    assert (pong["type"], pong["id"], pong["seq"], pong["clientseq"]) == ("pong", SESSION, 1, 1)


def test_update_is_answered_and_reports_the_language() -> None:
    client = opened()
    client.audio(b"\x00" * 80, b"\x00" * 80)
    client.session.events_received()
    (updated,) = client.message(update_message, language="es-ES")
    assert (updated["type"], updated["clientseq"], updated["parameters"]) == ("updated", 2, {})
    assert client.session.events_received() == [
        ControlEvent("language", 10.0, {"language": "es-ES"})
    ]


def test_client_error_is_an_event_and_the_session_goes_on() -> None:
    client = opened()
    assert client.message(error_message, code=429, message="slow down", retry_after_ms=1500) == []
    assert client.session.events_received() == [
        ControlEvent("client_error", 0.0, {"code": "429", "message": "slow down"})
    ]
    assert client.message(ping_message)[0]["type"] == "pong"


def test_supported_languages_are_listed_only_when_asked() -> None:
    options = AudioHookOptions(supported_languages=("en-US", "es-ES"))
    reply = Genesys(AudioHookSession(options)).open(supported_languages=True)
    assert reply["parameters"]["supportedLanguages"] == ["en-US", "es-ES"]
    reply = Genesys(AudioHookSession(options)).open(supported_languages=False)
    assert "supportedLanguages" not in reply["parameters"]


def test_second_open_is_ignored() -> None:
    client = opened()
    assert (
        client.raw(open_message(SESSION, 2, organization_id=ORG, conversation_id=CONVERSATION))
        == []
    )
    assert client.session.events_received() == []


# --------------------------------------------------------------------------- pause, resume, discard


def test_client_secure_pause_becomes_a_gap_on_the_timeline() -> None:
    client = opened()
    client.audio(b"a" * 800, b"b" * 800)  # 100 ms
    client.session.events_received()
    assert client.message(paused_message) == []
    assert client.session.state == "paused"
    assert client.session.events_received() == [
        ControlEvent("paused", 100.0, {"initiator": "client"})
    ]
    assert client.message(resumed_message, start_ms=100.0, discarded_ms=5200.0) == []
    client.position_ms = 5300.0
    client.audio(b"c" * 8, b"d" * 8)
    assert client.session.events_received() == [
        Gap(100.0, 5300.0, "client_pause"),
        ControlEvent("resumed", 5300.0, {"discarded_ms": "5200"}),
        AudioChunk("customer", b"c" * 8, 5300.0),
        AudioChunk("agent", b"d" * 8, 5300.0),
    ]
    assert client.session.position_ms == 5301.0


def test_server_requested_pause_and_resume() -> None:
    client = opened()
    client.audio(b"a" * 80, b"b" * 80)
    client.session.events_received()
    client.session.request_pause()
    (pause,) = client.collect()
    assert (pause["type"], pause["seq"], pause["clientseq"], pause["parameters"]) == (
        "pause",
        2,
        1,
        {},
    )
    client.message(paused_message)
    assert client.session.events_received() == [
        ControlEvent("paused", 10.0, {"initiator": "server"})
    ]
    client.session.request_resume()
    (resume,) = client.collect()
    assert (resume["type"], resume["seq"], resume["clientseq"]) == ("resume", 3, 2)
    client.message(resumed_message, start_ms=10.0, discarded_ms=5_000_000.125)
    assert client.session.events_received() == [
        Gap(10.0, 5_000_010.125, "server_pause"),
        ControlEvent("resumed", 5_000_010.125, {"discarded_ms": "5000000.125"}),
    ]
    assert client.session.state == "active"


def test_repeated_paused_is_idempotent_and_stray_resumed_still_counts_time() -> None:
    client = opened()
    client.message(paused_message)
    client.message(paused_message)  # e.g. answering our resume during its own secure pause
    assert len(client.session.events_received()) == 1
    client.message(resumed_message, start_ms=0.0, discarded_ms=1000.0)
    client.message(resumed_message, start_ms=1000.0, discarded_ms=0.0)  # nothing skipped
    assert client.session.events_received() == [
        Gap(0.0, 1000.0, "client_pause"),
        ControlEvent("resumed", 1000.0, {"discarded_ms": "1000"}),
        ControlEvent("resumed", 1000.0, {"discarded_ms": "0"}),
    ]


def test_discarded_audio_is_a_gap_and_moves_the_position() -> None:
    client = opened()
    client.audio(b"a" * 160, b"b" * 160)
    client.session.events_received()
    assert client.message(discarded_message, start_ms=20.0, discarded_ms=250.25) == []
    client.audio(b"c", b"d")
    assert client.session.events_received() == [
        Gap(20.0, 270.25, "discarded"),
        AudioChunk("customer", b"c", 270.25),
        AudioChunk("agent", b"d", 270.25),
    ]


def test_close_during_a_pause_ends_with_a_gap_to_the_close_position() -> None:
    client = opened()
    client.message(paused_message)
    client.session.events_received()
    (closed,) = client.message(close_message, reason="end", position_ms=3000.0)
    assert closed["type"] == "closed"
    assert client.session.events_received() == [
        Gap(0.0, 3000.0, "client_pause"),
        CallEnded("end", 3000.0),
    ]


def test_pause_requested_before_open_starts_paused() -> None:
    session = AudioHookSession()
    session.request_pause()
    reply = Genesys(session).open()
    assert reply["parameters"]["startPaused"] is True
    session.request_resume()  # now open: goes on the wire
    assert json.loads(session.data_to_send()[0])["type"] == "resume"


def test_resume_requested_before_open_cancels_start_paused() -> None:
    session = AudioHookSession()
    session.request_pause()
    session.request_resume()
    assert Genesys(session).open()["parameters"]["startPaused"] is False


def test_audio_while_paused_is_a_409() -> None:
    client = opened()
    client.message(paused_message)
    expect_failure(client, lambda: client.audio(b"a", b"b"), 1002, 409, "while paused")


# --------------------------------------------------------------------------- probe, disconnect, eof


def test_connection_probe_is_answered_but_yields_no_events() -> None:
    session = AudioHookSession()
    client = Genesys(session)
    participant: wire.Participant = {"id": NULL_UUID, "ani": "", "aniName": "", "dnis": ""}
    reply = client.open(conversation_id=NULL_UUID, participant=participant)
    assert reply["type"] == "opened" and session.is_probe
    client.audio(b"\x00" * 10, b"\x00" * 10)
    (closed,) = client.message(close_message, reason="end")
    assert (closed["type"], closed["seq"], closed["clientseq"]) == ("closed", 2, 2)
    assert session.events_received() == [] and session.closed


def test_server_disconnect_completed_waits_for_the_clients_close() -> None:
    client = opened()
    client.session.disconnect("completed", "call is over")
    client.session.disconnect("completed")  # once only
    (disconnect,) = client.collect()
    assert (disconnect["type"], disconnect["parameters"]) == (
        "disconnect",
        {"reason": "completed", "info": "call is over"},
    )
    assert client.session.close_expected() and client.session.awaits_peer()
    client.audio(b"a", b"b")  # in flight before Genesys saw the disconnect
    (closed,) = client.message(close_message, reason="disconnect")
    assert closed["type"] == "closed"
    events = client.session.events_received()
    assert events[-1] == CallEnded("disconnect", 0.125) and len(events) == 3
    assert not client.session.awaits_peer() and client.session.error is None
    assert client.session.close == Close(CloseCode.NORMAL_CLOSURE, "disconnect")


def test_server_disconnect_unauthorized_stops_the_call() -> None:
    client = opened()
    client.session.disconnect("unauthorized")
    (disconnect,) = client.collect()
    assert disconnect["parameters"] == {"reason": "unauthorized"}
    assert client.session.events_received() == [CallEnded("unauthorized", 0.0)]
    client.audio(b"a", b"b")
    assert client.session.events_received() == []
    assert client.message(close_message, reason="disconnect")[0]["type"] == "closed"


def test_eof_without_close_ends_the_call() -> None:
    client = opened()
    client.audio(b"a" * 8, b"b" * 8)
    client.session.events_received()
    client.session.receive_eof()
    assert client.session.events_received() == [CallEnded("connection_lost", 1.0)]
    assert client.session.closed
    client.session.receive_eof()
    assert client.session.events_received() == []


# --------------------------------------------------------------------------- violations


def test_wrong_organization_is_unauthorized() -> None:
    client = Genesys(AudioHookSession(organization_id=ORG))
    other = "6bd28c51-2d62-4fc6-8f5d-0d1bd01ab4a1"
    expect_failure(
        client, lambda: client.open(organization_id=other), 1008, 401, "organizationId differs"
    )
    assert client.session.state == "unauthorized" and client.session.events_received() == []


def test_organization_match_ignores_case() -> None:
    client = Genesys(AudioHookSession(organization_id=ORG.upper()))
    assert client.open()["type"] == "opened"


@pytest.mark.parametrize(
    ("seq", "serverseq", "session_id", "fragment"),
    [
        (3, 1, SESSION, "seq 3 does not follow 1"),
        (1, 1, SESSION, "seq 1 does not follow 1"),
        (2, 2, SESSION, "serverseq 2 is beyond our seq 1"),
        (2, 1, "6bd28c51-2d62-4fc6-8f5d-0d1bd01ab4a1", "session id differs"),
    ],
)
def test_sequence_violations(seq: int, serverseq: int, session_id: str, fragment: str) -> None:
    client = opened()
    bad = ping_message(session_id, seq, serverseq=serverseq)
    expect_failure(client, lambda: client.raw(bad), 1002, 400, fragment)
    assert client.session.events_received() == [CallEnded("protocol_error", 0.0)]


def test_session_header_binds_the_first_message() -> None:
    client = Genesys(AudioHookSession(session_id="6bd28c51-2d62-4fc6-8f5d-0d1bd01ab4a1"))
    expect_failure(client, lambda: client.open(), 1002, 400, "session id differs")


def _message(kind: str, **fields: Any) -> str:
    message: dict[str, Any] = {
        "version": "2",
        "id": SESSION,
        "type": kind,
        "seq": 2,
        "serverseq": 1,
        "position": "PT0S",
        "parameters": {},
    }
    message.update(fields)
    return json.dumps(message)


@pytest.mark.parametrize(
    ("text", "close_code", "fragment"),
    [
        ("{not json", 1007, "not valid JSON"),
        ('{"seq": NaN}', 1007, "not valid JSON"),
        ("[" * 5000, 1007, "not valid JSON"),
        ('["open"]', 1007, "not a JSON object"),
        (_message("ping", version="1"), 1002, "'version'"),
        (_message("ping", id="not-a-uuid"), 1002, "'id'"),
        (_message("ping", seq=True), 1002, "'seq'"),
        (_message("ping", seq=-1), 1002, "'seq'"),
        (_message("ping", position="1.5"), 1002, "'position'"),
        (_message("ping", position="PT-1S"), 1002, "'position'"),
        (_message("ping", parameters=None), 1002, "'parameters'"),
        (_message("opened"), 1002, "not a supported client message"),
        (_message("dance"), 1002, "not a supported client message"),
        (_message("close", parameters={"reason": "bored"}), 1002, "'reason'"),
        (_message("discarded", parameters={"start": "PT1S"}), 1002, "'discarded'"),
        (_message("resumed", parameters={"start": 1, "discarded": "PT1S"}), 1002, "'start'"),
        (_message("error", parameters={"code": "500", "message": "x"}), 1002, "'code'"),
        (_message("error", parameters={"code": 500}), 1002, "'message'"),
        (_message("update", parameters={}), 1002, "'language'"),
        (_message("ping", parameters={"rtt": "soon"}), 1002, "'rtt'"),
    ],
)
def test_malformed_messages(text: str, close_code: int, fragment: str) -> None:
    client = opened()
    expect_failure(client, lambda: client.raw(text), close_code, 400, fragment)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"organizationId": "x"}, "'organizationId'"),
        ({"conversationId": None}, "'conversationId'"),
        ({"participant": {"id": NULL_UUID}}, "'participant'"),
        ({"media": {"type": "audio"}}, "'media'"),
        ({"language": 5}, "'language'"),
        ({"customConfig": []}, "'customConfig'"),
        ({"supportedLanguages": "yes"}, "'supportedLanguages'"),
    ],
)
def test_malformed_open(change: dict[str, Any], fragment: str) -> None:
    message = json.loads(open_message(SESSION, organization_id=ORG, conversation_id=CONVERSATION))
    message["parameters"].update(change)
    client = Genesys(AudioHookSession())
    expect_failure(client, lambda: client.raw(json.dumps(message)), 1002, 400, fragment)


def test_audio_before_opened_is_a_409() -> None:
    client = Genesys(AudioHookSession())
    expect_failure(client, lambda: client.audio(b"a", b"b"), 1002, 409, "before 'opened'")


def test_odd_length_stereo_frame_is_invalid_payload() -> None:
    client = opened()
    expect_failure(client, lambda: client.session.receive_bytes(b"abc"), 1007, 400, "odd length")


def test_oversize_frames_are_413() -> None:
    options = AudioHookOptions(max_message_bytes=1000)
    client = opened(options)
    expect_failure(
        client, lambda: client.session.receive_bytes(b"\x00" * 1002), 1009, 413, "binary"
    )
    client = opened(options)
    big = ping_message(SESSION, 2, serverseq=1)[:-1] + ',"pad":"' + "é" * 500 + '"}'
    expect_failure(client, lambda: client.raw(big), 1009, 413, "text message too large")


def test_after_a_failure_only_close_is_answered() -> None:
    client = opened()
    expect_failure(client, lambda: client.raw("{"), 1007, 400, "JSON")
    assert client.session.state == "failed"
    client.session.receive_bytes(b"ab")  # ignored: no second disconnect, no raise
    client.raw("still not json")
    assert client.message(ping_message) == []
    assert client.session.awaits_peer()
    (closed,) = client.message(close_message, reason="error")
    assert (closed["type"], closed["clientseq"]) == ("closed", client.seq)
    assert client.session.closed and not client.session.awaits_peer()
    assert client.session.close is not None
    assert client.session.close.code == CloseCode.INVALID_PAYLOAD  # the error's, not 1000
    assert client.session.events_received() == [CallEnded("protocol_error", 0.0)]
    client.raw(close_message(SESSION, client.seq + 1))  # after closed: ignored
    assert client.collect() == []


def test_a_normal_close_closes_the_socket_normally() -> None:
    client = opened()
    assert not client.session.close_expected()
    client.close("end")
    assert client.session.close == Close(CloseCode.NORMAL_CLOSURE, "closed")
    assert not client.session.awaits_peer() and client.session.error is None


@pytest.mark.parametrize(
    "hostile",
    [
        lambda c: c.error(500, "bad \ud800 string"),
        lambda c: c.update("en-\udfff"),
        lambda c: c.send("ping", {"\ud800": "key"}),
        lambda c: c.send("ping", {"x": ["ok", {"deep": "\udbff"}]}),
    ],
)
def test_lone_surrogates_in_any_string_close_with_invalid_payload(
    hostile: Callable[[AudioHookClient], None],
) -> None:
    client = opened()
    client.audio(b"\x00" * 80, b"\x00" * 80)
    client.session.events_received()
    hostile(client.client)
    frame = client.client.data_to_send()[0]
    assert isinstance(frame, str)
    assert frame.isascii()  # "\ud800" travels as a JSON escape; json.loads makes it lone
    expect_failure(client, lambda: client.raw(frame), 1007, 400, "lone surrogate")
    assert client.session.events_received() == [CallEnded("protocol_error", 10.0)]


@pytest.mark.parametrize(
    "change",
    [
        {"customConfig": {"queue": "\ud800"}},
        {"customConfig": {"\udc00": "x"}},
        {"customConfig": {"nested": {"list": ["\ud800"]}}},
        {"participant": PARTICIPANT | {"aniName": "Pat \ud800"}},
        {"language": "\ud800"},
        {"unknownKey": "\ud800"},
    ],
)
def test_lone_surrogates_in_open_refuse_the_session_loudly(change: dict[str, Any]) -> None:
    message = json.loads(open_message(SESSION, organization_id=ORG, conversation_id=CONVERSATION))
    message["parameters"].update(change)
    text = json.dumps(message)  # ensure_ascii: "\ud800" travels as an escape, as on the wire
    assert "\\ud" in text
    client = Genesys(AudioHookSession())
    expect_failure(client, lambda: client.raw(text), 1007, 400, "lone surrogate")
    assert client.session.events_received() == []  # no call, and the failure is on record


def test_surrogate_pairs_are_fine() -> None:
    client = opened(custom_config={"note": "\U0001f600"})
    assert client.session.error is None


def test_caller_number_and_name_are_keyed_hashes_with_a_key() -> None:
    options = AudioHookOptions(caller_id_key=b"secret")
    session = AudioHookSession(options)
    Genesys(session).open(custom_config={"callerNumber": "+1 555 555 0100", "queue": "q"})
    (started,) = session.events_received()
    assert isinstance(started, CallStarted)
    params = started.info.parameters
    assert params["participant.ani"].startswith(HASH_PREFIX)
    assert params["participant.aniName"].startswith(HASH_PREFIX)
    assert params["callerNumber"] == params["participant.ani"]  # same number, same hash
    assert params["queue"] == "q" and params["participant.dnis"] == PARTICIPANT["dnis"]
    stored = json.dumps(dict(params))
    assert "5550100" not in stored and "Pat" not in stored


def test_caller_identity_in_custom_config_cannot_pose_as_the_participant() -> None:
    session = AudioHookSession()
    Genesys(session).open(custom_config={"participant.ani": "+15555550100", "From": "x"})
    (started,) = session.events_received()
    assert isinstance(started, CallStarted)
    assert not {"participant.ani", "From", "participant.aniName"} & set(started.info.parameters)


def test_malformed_custom_config_signals_are_recorded_not_dropped() -> None:
    session = AudioHookSession()
    Genesys(session).open(custom_config={"intent": "x" * 300})
    assert session.events_received()[1:] == [
        ControlEvent("invalid_control", 0.0, {"reason": "intent value is over 200 characters"})
    ]


def test_a_bug_in_the_core_disconnects_with_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = opened()

    def broken(text: str) -> object:
        raise ZeroDivisionError

    monkeypatch.setattr(wire, "parse_client_message", broken)
    client.ping()
    error = client.session.error
    assert error is not None and error.close_code == CloseCode.INTERNAL_ERROR
    assert isinstance(error.__cause__, ZeroDivisionError)
    (disconnect,) = [r for r in client.replies if r["type"] == "disconnect"]
    assert disconnect["parameters"]["reason"] == "error"
    assert client.session.events_received() == [CallEnded("protocol_error", 0.0)]


# --------------------------------------------------------------------------- wire helpers


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("PT0S", 0),
        ("PT1.5S", 1_500_000),
        ("PT.25S", 250_000),
        ("PT12.S", 12_000_000),
        ("PT0.0000004S", 0),
        ("PT1.2000000000000002S", 1_200_000),
    ],
)
def test_durations_parse(text: str, us: int) -> None:
    assert wire.parse_duration_us(text) == us


@pytest.mark.parametrize("text", ["", "PT", "PTS", "P1S", "PT1", "PT1e3S", "PT-1S", 1.5, None])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        wire.parse_duration_us(text)


def test_durations_format_minimally() -> None:
    assert [wire.format_duration_ms(ms) for ms in (0, 1500, 20, 5200, 10_000)] == [
        "PT0S",
        "PT1.5S",
        "PT0.02S",
        "PT5.2S",
        "PT10S",
    ]
    with pytest.raises(ValueError):
        wire.format_duration_us(-1)


def test_builders_write_genesys_shapes() -> None:
    message = json.loads(resumed_message(SESSION, 5, start_ms=1500, discarded_ms=200, serverseq=3))
    assert message == {
        "version": "2",
        "id": SESSION,
        "type": "resumed",
        "seq": 5,
        "serverseq": 3,
        "position": "PT1.7S",
        "parameters": {"start": "PT1.5S", "discarded": "PT0.2S"},
    }
    opening = json.loads(open_message(SESSION, organization_id=ORG, conversation_id=CONVERSATION))
    assert opening["parameters"]["media"] == [STEREO, EXT, INT]
    assert opening["parameters"]["participant"]["id"] == NULL_UUID
    for text in (
        ping_message(SESSION, 2, rtt_ms=12),
        paused_message(SESSION, 3),
        discarded_message(SESSION, 4, start_ms=0, discarded_ms=1),
        update_message(SESSION, 5, language="en-US"),
        close_message(SESSION, 6),
        error_message(SESSION, 7, code=500, message="x"),
    ):
        assert wire.parse_client_message(text)["id"] == SESSION


def test_going_away_sends_disconnect_and_answers_the_close() -> None:
    genesys = opened()
    genesys.audio(b"\xff" * 160, b"\xff" * 160)
    genesys.session.events_received()
    genesys.session.going_away()
    (disconnect,) = genesys.collect()
    assert disconnect["type"] == "disconnect"
    assert disconnect["parameters"] == {"reason": "completed", "info": "server shutting down"}
    assert genesys.session.events_received() == [CallEnded("shutdown", 20.0)]
    assert genesys.session.close_expected() and genesys.session.awaits_peer()
    genesys.session.going_away()  # once only
    assert genesys.collect() == []
    (closed,) = genesys.close("disconnect")
    assert closed["type"] == "closed"
    assert not genesys.session.awaits_peer()
    assert genesys.session.close == Close(CloseCode.NORMAL_CLOSURE, "disconnect")
    assert genesys.session.events_received() == []  # the call had ended already


def test_going_away_before_open_just_closes() -> None:
    session = AudioHookSession(DEFAULTS, organization_id=ORG, session_id=SESSION)
    session.going_away()
    assert session.data_to_send() == [] and session.events_received() == []
    assert session.close == Close(CloseCode.GOING_AWAY, "server shutting down")


def test_continued_sessions_are_named_in_the_call_parameters() -> None:
    earlier = {"id": "5f8d4c53-6f8a-4b7e-9c8e-1f1b6f8f0a01", "serverseq": 7, "clientseq": 412}
    session = AudioHookSession()
    Genesys(session).open(continued_sessions=[earlier])
    started = session.events_received()[0]
    assert isinstance(started, CallStarted)
    assert started.info.parameters["continued_sessions"] == earlier["id"]


@pytest.mark.parametrize(
    "continued",
    [
        "not-a-list",
        [{"id": "not-a-uuid", "serverseq": 1, "clientseq": 1}],
        [{"id": "5f8d4c53-6f8a-4b7e-9c8e-1f1b6f8f0a01", "serverseq": -1, "clientseq": 1}],
        [{"id": "5f8d4c53-6f8a-4b7e-9c8e-1f1b6f8f0a01", "serverseq": 1}],
        [{"id": "5f8d4c53-6f8a-4b7e-9c8e-1f1b6f8f0a01", "serverseq": True, "clientseq": 1}],
    ],
)
def test_malformed_continued_sessions_fail_the_open(continued: Any) -> None:
    client = Genesys(AudioHookSession(DEFAULTS, organization_id=ORG, session_id=SESSION))
    expect_failure(
        client, lambda: client.open(continued_sessions=continued), 1002, 400, "continuedSessions"
    )


def test_l16_stereo_is_deinterleaved_sample_by_sample() -> None:
    client = opened(media=[L16])
    external, internal = bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])  # two samples each
    client.session.receive_bytes(interleave_stereo(external, internal, 2))
    assert client.session.events_received() == [
        AudioChunk("customer", external, 0.0, "L16", 8000),
        AudioChunk("agent", internal, 0.0, "L16", 8000),
    ]
    assert client.session.position_ms == 0.25
    client.session.receive_bytes(b"\x00" * 6)  # one and a half stereo samples
    assert client.session.error is not None and "partial samples" in str(client.session.error)


def test_an_l16_session_starts_an_l16_call() -> None:
    session = AudioHookSession()
    Genesys(session).open(media=[L16])
    started = session.events_received()[0]
    assert isinstance(started, CallStarted) and started.encoding == "L16"


def test_an_empty_media_offer_is_answered_with_no_medium_and_no_call() -> None:
    client = Genesys(AudioHookSession(DEFAULTS, organization_id=ORG, session_id=SESSION))
    reply = client.open(media=[])
    assert reply["type"] == "opened" and reply["parameters"]["media"] == []
    assert client.session.events_received() == []
    (closed,) = client.message(close_message, reason="end")
    assert closed["type"] == "closed" and client.session.error is None


def test_audio_after_an_empty_media_offer_is_a_conflict() -> None:
    client = Genesys(AudioHookSession(DEFAULTS, organization_id=ORG, session_id=SESSION))
    client.open(media=[])
    expect_failure(client, lambda: client.audio(b"\xff" * 8), 1002, 409, "no medium")
