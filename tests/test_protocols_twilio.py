"""The Twilio Media Streams parser fed raw JSON frames, as they arrive on the wire.

Frames are written out as JSON text in the shapes of Twilio's "Media Streams - WebSocket
Messages" page; the builders of ``cxguard.simulate.twilio`` are checked against the same
shapes. Violations are recorded on the stream (error, close code, ``protocol_error`` end),
never raised.
"""

from __future__ import annotations

import base64
import json

import pytest

from cxguard.errors import ProtocolError, TwilioProtocolError
from cxguard.model import (
    AudioChunk,
    CallEnded,
    CallInfo,
    CallStarted,
    ControlEvent,
    Dtmf,
    Mark,
)
from cxguard.protocols.base import Close, CloseCode
from cxguard.protocols.caller_id import HASH_PREFIX
from cxguard.protocols.twilio import TwilioOptions, TwilioStream
from cxguard.simulate.twilio import (
    connected_message,
    dtmf_message,
    mark_message,
    media_message,
    start_message,
    stop_message,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA362c7a6d4a4b3d2a2a40a4fd3f1b2a3b"
ACCOUNT = "AC25e16e9a716a4a1786a7c83f58e30482"
SILENCE = b"\xff" * 160  # 20 ms of μ-law silence
TONE = bytes(range(0, 160))

CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = (
    '{"event": "start", "sequenceNumber": "1", "streamSid": "' + SID + '", "start": {'
    '"accountSid": "' + ACCOUNT + '", "streamSid": "' + SID + '", "callSid": "' + CALL + '",'
    '"tracks": ["inbound", "outbound"],'
    '"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},'
    '"customParameters": {"tenant": "acme", "FirstName": "Jane"}}}'
)


def media(seq: int, track: str, chunk: int, ts: int, payload: bytes = SILENCE) -> str:
    return media_b64(seq, track, chunk, ts, base64.b64encode(payload).decode())


def media_b64(seq: int, track: str, chunk: int, ts: int, b64: str) -> str:
    return (
        f'{{"event": "media", "sequenceNumber": "{seq}", "streamSid": "{SID}", "media": '
        f'{{"track": "{track}", "chunk": "{chunk}", "timestamp": "{ts}", "payload": "{b64}"}}}}'
    )


def mark(seq: int, name: str) -> str:
    return json.dumps(
        {"event": "mark", "sequenceNumber": str(seq), "streamSid": SID, "mark": {"name": name}}
    )


def dtmf(seq: int, digit: str, track: str = "inbound_track") -> str:
    return (
        f'{{"event": "dtmf", "streamSid": "{SID}", "sequenceNumber": "{seq}", '
        f'"dtmf": {{"track": "{track}", "digit": "{digit}"}}}}'
    )


def stop(seq: int, call: str = CALL) -> str:
    return (
        f'{{"event": "stop", "sequenceNumber": "{seq}", "streamSid": "{SID}", '
        f'"stop": {{"accountSid": "{ACCOUNT}", "callSid": "{call}"}}}}'
    )


def start_with(**changes: object) -> str:
    """START with fields of its ``start`` body replaced (None deletes)."""
    msg = json.loads(START)
    for key, value in changes.items():
        if value is None:
            del msg["start"][key]
        else:
            msg["start"][key] = value
    return json.dumps(msg)


def feed(*frames: str, options: TwilioOptions | None = None) -> TwilioStream:
    stream = TwilioStream(options or TwilioOptions())
    for frame in frames:
        stream.receive_text(frame)
    return stream


def failure(stream: TwilioStream) -> TwilioProtocolError:
    """The recorded violation; the stream's close frame carries its code and message."""
    error = stream.error
    assert isinstance(error, TwilioProtocolError)
    assert stream.closed and stream.close_expected() and not stream.awaits_peer()
    assert stream.close == Close(CloseCode(error.close_code), str(error))
    return error


# --------------------------------------------------------------------------- a whole call


def test_a_whole_call_becomes_model_events() -> None:
    stream = feed(
        CONNECTED,
        START,
        media(2, "inbound", 1, 0, TONE),
        media(3, "outbound", 1, 0, SILENCE),
        media(4, "inbound", 2, 20, TONE[::-1]),
        dtmf(5, "7"),
        mark(6, "greeting-done"),
        stop(7),
    )
    info = CallInfo(
        call_id=CALL,
        tenant="acme",
        source="twilio",
        stream_id=SID,
        account_sid=ACCOUNT,
        parameters={"tenant": "acme", "FirstName": "Jane"},
    )
    assert stream.events_received() == [
        CallStarted(info, encoding="PCMU", sample_rate=8000),
        AudioChunk("customer", TONE, 0.0),
        AudioChunk("agent", SILENCE, 0.0),
        AudioChunk("customer", TONE[::-1], 20.0),
        Dtmf("7", 20.0),
        Mark("greeting-done"),
        CallEnded("stop", 20.0),
    ]
    assert stream.call_info == info
    assert stream.closed
    assert stream.events_received() == []  # drained


def test_events_are_drained_per_call() -> None:
    stream = feed(CONNECTED)
    assert stream.events_received() == []
    assert stream.call_info is None and not stream.closed and stream.position_ms is None
    stream.receive_text(START)
    assert [type(e) for e in stream.events_received()] == [CallStarted]
    stream.receive_text(media(2, "inbound", 1, 40))
    assert stream.events_received() == [AudioChunk("customer", SILENCE, 40.0)]
    assert stream.position_ms == 40.0
    assert stream.data_to_send() == []


def test_track_mapping_is_configurable() -> None:
    options = TwilioOptions(inbound_speaker="agent", outbound_speaker="customer")
    stream = feed(START, media(2, "inbound", 1, 0), media(3, "outbound", 1, 0), options=options)
    speakers = [e.speaker for e in stream.events_received() if isinstance(e, AudioChunk)]
    assert speakers == ["agent", "customer"]


def test_connected_is_optional_and_stop_body_may_be_absent() -> None:
    bare_stop = json.dumps({"event": "stop", "sequenceNumber": "3", "streamSid": SID})
    stream = feed(START, media(2, "inbound", 1, 60), bare_stop)
    assert stream.events_received()[-1] == CallEnded("stop", 60.0)


def test_stop_without_media_has_no_position() -> None:
    stream = feed(START, stop(2))
    assert stream.events_received()[-1] == CallEnded("stop", None)


# --------------------------------------------------------------------------- tenant & signals


@pytest.mark.parametrize(
    ("params", "options", "tenant"),
    [
        ({"tenant": "acme"}, TwilioOptions(), "acme"),
        ({}, TwilioOptions(), "default"),
        ({"tenant": ""}, TwilioOptions(default_tenant="fallback"), "fallback"),
        ({"org": "globex", "tenant": "acme"}, TwilioOptions(tenant_parameter="org"), "globex"),
    ],
)
def test_tenant_comes_from_custom_parameters(
    params: dict[str, str], options: TwilioOptions, tenant: str
) -> None:
    stream = feed(start_with(customParameters=params), options=options)
    assert stream.call_info is not None
    assert stream.call_info.tenant == tenant
    assert stream.call_info.parameters == params


def test_missing_custom_parameters_mean_none() -> None:
    stream = feed(start_with(customParameters=None))
    assert stream.call_info is not None
    assert (stream.call_info.tenant, dict(stream.call_info.parameters)) == ("default", {})


@pytest.mark.parametrize(
    ("value", "signalled"),
    [
        *[("true", True), ("1", True), (" Yes ", True), ("TRUE", True)],
        *[("false", False), ("0", False), ("", False), ("no", False)],
    ],
)
def test_authenticated_parameter_is_a_control_event(value: str, signalled: bool) -> None:
    stream = feed(start_with(customParameters={"authenticated": value}))
    controls = [e for e in stream.events_received() if isinstance(e, ControlEvent)]
    assert controls == ([ControlEvent("authenticated", 0.0)] if signalled else [])


def test_intent_parameter_is_a_control_event() -> None:
    stream = feed(start_with(customParameters={"intent": "billing_question", "authenticated": "1"}))
    assert stream.events_received()[1:] == [
        ControlEvent("authenticated", 0.0),
        ControlEvent("intent", 0.0, {"intent": "billing_question"}),
    ]


def test_cxguard_marks_are_control_events_at_the_last_media_timestamp() -> None:
    stream = feed(
        START,
        mark(2, "cxguard.handoff"),
        media(3, "inbound", 1, 0),
        media(4, "outbound", 1, 0),
        media(5, "inbound", 2, 20),
        mark(6, "cxguard.authenticated"),
        mark(7, "cxguard.intent=cancel_account"),
        mark(8, "tts-chunk-3"),
    )
    events = [e for e in stream.events_received() if isinstance(e, Mark | ControlEvent)]
    assert events == [
        Mark("cxguard.handoff"),
        ControlEvent("handoff", 0.0),
        Mark("cxguard.authenticated"),
        ControlEvent("authenticated", 20.0),
        Mark("cxguard.intent=cancel_account"),
        ControlEvent("intent", 20.0, {"intent": "cancel_account"}),
        Mark("tts-chunk-3"),
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("cxguard.", "control name is not a lower-case identifier"),
        ("cxguard.intent", "intent needs a value"),
        ("cxguard.intent=", "intent needs a value"),
        ("cxguard.intent=  ", "intent needs a value"),
        ("cxguard.Intent=x", "control name is not a lower-case identifier"),
        ("cxguard.=x", "control name is not a lower-case identifier"),
        ("cxguard.intent=" + "x" * 201, "intent value is over 200 characters"),
        ("cxguard.invalid_control", "control name is not a lower-case identifier"),
        ("cxguard.a b", "control name is not a lower-case identifier"),
    ],
)
def test_malformed_control_marks_are_recorded_and_the_stream_goes_on(
    name: str, reason: str
) -> None:
    stream = feed(START, media(2, "inbound", 1, 20), mark(3, name), media(4, "inbound", 2, 40))
    events = stream.events_received()
    assert events[2:4] == [Mark(name), ControlEvent("invalid_control", 20.0, {"reason": reason})]
    assert isinstance(events[4], AudioChunk) and stream.error is None


def test_well_formed_unknown_controls_pass_with_their_value() -> None:
    stream = feed(START, mark(2, "cxguard.agent_version=2.4.1"), mark(3, "cxguard.escalate"))
    assert [e for e in stream.events_received() if isinstance(e, ControlEvent)] == [
        ControlEvent("agent_version", 0.0, {"agent_version": "2.4.1"}),
        ControlEvent("escalate", 0.0),
    ]


# --------------------------------------------------------------------------- ordering tolerance


def test_tracks_are_ordered_separately_and_gaps_are_tolerated() -> None:
    stream = feed(
        START,
        media(2, "inbound", 1, 100),
        media(3, "outbound", 1, 40),  # behind inbound: fine, other track
        media(5, "inbound", 3, 140),  # sequence and chunk gaps: fine
        media(6, "inbound", 4, 140),  # equal timestamp: fine
    )
    starts = [e.start_ms for e in stream.events_received() if isinstance(e, AudioChunk)]
    assert starts == [100.0, 40.0, 140.0, 140.0]
    assert stream.position_ms == 140.0


def test_counters_may_start_at_zero_but_not_repeat() -> None:
    zero_start = START.replace('"sequenceNumber": "1"', '"sequenceNumber": "0"')
    stream = feed(zero_start, media(1, "outbound", 0, 0), media(2, "inbound", 0, 0))
    assert len(stream.events_received()) == 3
    stream.receive_text(media(3, "outbound", 0, 20))
    assert "outbound chunk 0 does not follow chunk 0" in str(failure(stream))


def test_inbound_only_stream() -> None:
    stream = feed(start_with(tracks=["inbound"]), media(2, "inbound", 1, 0))
    assert stream.events_received()[-1] == AudioChunk("customer", SILENCE, 0.0)


# --------------------------------------------------------------------------- errors

# fmt: off
ERRORS: list[tuple[str, list[str], str, int, str]] = [
    ("malformed json", [], '{"event": "start",', 1007, "not valid JSON"),
    ("json array", [], "[1, 2]", 1007, "must be a JSON object, got array"),
    ("json string", [], '"media"', 1007, "got string"),
    ("deep nesting", [], "[" * 60000, 1007, "not valid JSON"),
    ("huge integer", [START], '{"event": "media", "n": ' + "9" * 5000 + "}", 1007, "JSON"),
    ("no event", [], '{"streamSid": "MZ1"}', 1007, "frame.event must be a string, got nothing"),
    ("event number", [], '{"event": 3}', 1007, "frame.event must be a string, got number"),
    ("unknown event", [START], json.dumps({"event": "clear", "streamSid": SID}), 1003, "clear"),
    ("media before start", [CONNECTED], media(2, "inbound", 1, 0), 1002, "before 'start'"),
    ("mark before start", [], mark(2, "x"), 1002, "'mark' before 'start'"),
    ("dtmf before start", [], dtmf(2, "1"), 1002, "'dtmf' before 'start'"),
    ("stop before start", [], stop(2), 1002, "'stop' before 'start'"),
    ("second start", [START], START.replace('"1"', '"2"', 1), 1002, "second 'start'"),
    ("connected after start", [START], CONNECTED, 1002, "'connected'"),
    ("connected twice", [CONNECTED], CONNECTED, 1002, "'connected'"),
    ("no payload", [START], media(2, "inbound", 1, 0).replace('"payload"', '"p"'), 1007,
     "media.payload must be a string"),
    ("chunk as number", [START], media(2, "inbound", 1, 0).replace('"chunk": "1"', '"chunk": 1'),
     1007, "media.chunk must be a string, got number"),
    ("media not object", [START], json.dumps({"event": "media", "sequenceNumber": "2",
     "streamSid": SID, "media": "x"}), 1007, "frame.media must be a JSON object"),
    ("bad base64", [START], media_b64(2, "inbound", 1, 0, "!!!!"), 1007, "not valid base64"),
    ("unpadded base64", [START], media_b64(2, "inbound", 1, 0, "AQI"), 1007, "base64"),
    ("non-ascii base64", [START], media_b64(2, "inbound", 1, 0, "AQ\u00e9="), 1007, "base64"),
    ("base64 with space", [START], media_b64(2, "inbound", 1, 0, "AQ I="), 1007, "base64"),
    ("unknown track", [START], media(2, "both", 1, 0), 1007, "media.track 'both'"),
    ("unannounced track", [start_with(tracks=["inbound"])], media(2, "outbound", 1, 0), 1007,
     "did not announce"),
    ("unknown start track", [], start_with(tracks=["inbound", "sideways"]), 1007, "sideways"),
    ("empty tracks", [], start_with(tracks=[]), 1007, "non-empty array"),
    ("text timestamp", [START], media(2, "inbound", 1, 0).replace('"0"', '"12a"'), 1007,
     "media.timestamp must be a decimal string"),
    ("negative timestamp", [START], media(2, "inbound", 1, 0).replace('"0"', '"-5"'), 1007,
     "media.timestamp"),
    ("fraction timestamp", [START], media(2, "inbound", 1, 0).replace('"0"', '"1.5"'), 1007,
     "media.timestamp"),
    ("arabic digits", [START], media(2, "inbound", 1, 0).replace('"0"', '"\u0661"'), 1007,
     "media.timestamp"),
    ("timestamp back", [START, media(2, "inbound", 1, 40)], media(3, "inbound", 2, 20), 1007,
     "goes back"),
    ("chunk repeated", [START, media(2, "inbound", 1, 0)], media(3, "inbound", 1, 20), 1007,
     "inbound chunk 1 does not follow chunk 1"),
    ("sequence repeated", [START, media(2, "inbound", 1, 0)], media(2, "inbound", 2, 20), 1007,
     "sequenceNumber 2 does not follow 2"),
    ("sequence empty", [START], media(2, "inbound", 1, 0).replace('"2"', '""'), 1007,
     "sequenceNumber"),
    ("l16 format", [], start_with(mediaFormat={"encoding": "audio/x-l16", "sampleRate": 8000,
     "channels": 1}), 1003, "unsupported mediaFormat"),
    ("16 kHz", [], start_with(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 16000,
     "channels": 1}), 1003, "unsupported mediaFormat"),
    ("stereo", [], start_with(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 8000,
     "channels": 2}), 1003, "unsupported mediaFormat"),
    ("rate as text", [], start_with(mediaFormat={"encoding": "audio/x-mulaw",
     "sampleRate": "8000", "channels": 1}), 1007, "sampleRate must be an integer, got string"),
    ("rate as bool", [], start_with(mediaFormat={"encoding": "audio/x-mulaw",
     "sampleRate": 8000, "channels": True}), 1007, "channels must be an integer, got boolean"),
    ("no callSid", [], start_with(callSid=None), 1007, "start.callSid must be a string"),
    ("param not text", [], start_with(customParameters={"tenant": 7}), 1007,
     "start.customParameters.tenant must be a string"),
    ("lone surrogate", [], START.replace('"Jane"', '"\\ud800"'), 1007, "lone surrogate"),
    ("start sid mismatch", [], START.replace(f'"streamSid": "{SID}", "start"',
     '"streamSid": "MZother", "start"'), 1007, "differs"),
    ("media sid mismatch", [START], media(2, "inbound", 1, 0).replace(SID, "MZother"), 1007,
     "streamSid 'MZother' differs"),
    ("stop call mismatch", [START], stop(2, call="CAother"), 1007, "stop.callSid"),
    ("dtmf digit", [START], dtmf(2, "12"), 1007, "dtmf.digit '12'"),
    ("dtmf track", [START], dtmf(2, "1", track="inbound"), 1007, "dtmf.track 'inbound'"),
    ("mark no name", [START], json.dumps({"event": "mark", "sequenceNumber": "2",
     "streamSid": SID, "mark": {}}), 1007, "mark.name must be a string, got nothing"),
]
# fmt: on


@pytest.mark.parametrize(
    ("before", "frame", "close_code", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
def test_protocol_errors(before: list[str], frame: str, close_code: int, fragment: str) -> None:
    stream = feed(*before)
    earlier = stream.events_received()
    assert len(earlier) == sum(1 for f in before if '"connected"' not in f)
    position = stream.position_ms
    stream.receive_text(frame)  # never raises: the violation is recorded
    error = failure(stream)
    assert error.close_code == close_code and isinstance(error, ProtocolError)
    assert fragment in str(error)
    # the failing frame yields nothing but the end of a call it interrupts
    started = any(isinstance(e, CallStarted) for e in earlier)
    ended = [CallEnded("protocol_error", position)] if started else []
    assert stream.events_received() == ended
    # and the stream stays closed: further input is ignored, the first error stands
    stream.receive_text(media(99, "inbound", 99, 9999))
    stream.receive_bytes(b"x")
    assert stream.error is error and stream.events_received() == []


def test_close_codes_are_the_enum() -> None:
    assert [int(c) for c in CloseCode] == [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011]
    stream = feed("{")
    assert stream.close is not None and stream.close.code is CloseCode.INVALID_PAYLOAD


def test_oversize_frames_close_with_1009() -> None:
    options = TwilioOptions(max_message_bytes=1000)
    ascii_frame = media(2, "inbound", 1, 0, b"\x00" * 720)  # 960 chars of base64 + envelope
    assert failure(feed(START, ascii_frame, options=options)).close_code == 1009
    # 300 characters, but 1200 bytes of UTF-8: the limit is on bytes
    wide = json.dumps({"event": "mark", "x": "\U0001f600" * 300}, ensure_ascii=False)
    assert len(wide) < 1000 < len(wide.encode())
    assert failure(feed(START, wide, options=options)).close_code == 1009


def test_payload_over_the_limit_closes_with_1009() -> None:
    options = TwilioOptions(max_payload_bytes=160)
    assert feed(START, media(2, "inbound", 1, 0, b"\x00" * 160), options=options).error is None
    big = feed(START, media(2, "inbound", 1, 0, b"\x00" * 161), options=options)
    assert failure(big).close_code == 1009


def test_a_long_close_reason_is_cut_to_fit_a_close_frame() -> None:
    stream = feed(START, media(2, "inbound", 1, 0).replace(SID, "MZ" + "\u00e9" * 100))
    assert stream.close is not None
    assert len(stream.close.reason.encode()) <= 123 and stream.close.reason


def test_binary_frames_close_with_1003() -> None:
    stream = feed(START)
    stream.events_received()
    stream.receive_bytes(CONNECTED.encode())
    assert failure(stream).close_code == 1003
    assert stream.events_received() == [CallEnded("protocol_error", None)]


def test_stop_ends_the_stream_normally_and_later_frames_are_ignored() -> None:
    stream = feed(START, media(2, "inbound", 1, 20), stop(3))
    assert stream.close == Close(CloseCode.NORMAL_CLOSURE, "stop")
    assert stream.error is None and stream.closed
    stream.events_received()
    for frame in (stop(4), mark(4, "x"), START, "{"):
        stream.receive_text(frame)
    stream.receive_bytes(b"")
    assert stream.error is None and stream.events_received() == []


def test_eof_ends_an_open_call_once() -> None:
    stream = feed(START, media(2, "inbound", 1, 20))
    stream.events_received()
    stream.receive_eof()
    stream.receive_eof()
    assert stream.events_received() == [CallEnded("connection_lost", 20.0)]
    assert stream.close_expected() and stream.error is None


def test_a_bug_in_the_core_is_recorded_as_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = feed(START)
    stream.events_received()

    def broken(message: object) -> object:
        raise KeyError("a bug")

    monkeypatch.setattr("cxguard.protocols.twilio_parse.media", broken)
    stream.receive_text(media(2, "inbound", 1, 0))
    error = stream.error
    assert error is not None and error.close_code == CloseCode.INTERNAL_ERROR
    assert isinstance(error.__cause__, KeyError)
    assert stream.events_received() == [CallEnded("protocol_error", None)]


# --------------------------------------------------------------------------- tenant & caller id


def test_a_signed_tenant_wins_over_the_claimed_one() -> None:
    stream = feed(START, options=TwilioOptions(tenant="proven"))
    assert stream.call_info is not None and stream.call_info.tenant == "proven"
    assert stream.call_info.parameters["tenant"] == "acme"  # the claim is kept, not used


@pytest.mark.parametrize("name", ["From", "caller_id", "callerNumber", "ANI", "phone-number"])
def test_caller_identity_parameters_are_dropped_without_a_key(name: str) -> None:
    stream = feed(start_with(customParameters={name: "+1 555 555 0100", "queue": "billing"}))
    assert stream.call_info is not None
    assert dict(stream.call_info.parameters) == {"queue": "billing"}


def test_caller_identity_parameters_are_keyed_hashes_with_a_key() -> None:
    def stored(key: bytes, number: str) -> str:
        stream = feed(
            start_with(customParameters={"From": number}),
            options=TwilioOptions(caller_id_key=key),
        )
        assert stream.call_info is not None
        return stream.call_info.parameters["From"]

    hashed = stored(b"k1", "+1 (555) 555-0100")
    assert hashed.startswith(HASH_PREFIX) and len(hashed) == len(HASH_PREFIX) + 32
    assert "5550100" not in hashed
    assert stored(b"k1", "+15555550100") == hashed  # formatting does not matter
    assert stored(b"k2", "+15555550100") != hashed  # the key does
    assert stored(b"k1", "+15555550101") != hashed


# --------------------------------------------------------------------------- client builders


def test_builders_write_twilio_shapes() -> None:
    assert json.loads(connected_message()) == json.loads(CONNECTED)
    built = start_message(
        SID, CALL, ACCOUNT, custom_parameters={"tenant": "acme", "FirstName": "Jane"}
    )
    assert json.loads(built) == json.loads(START)
    assert json.loads(media_message(SID, "outbound", 3, 40, TONE, 7)) == json.loads(
        media(7, "outbound", 3, 40, TONE)
    )
    assert json.loads(mark_message(SID, "x", 4)) == json.loads(mark(4, "x"))
    assert json.loads(dtmf_message(SID, "#", 5)) == json.loads(dtmf(5, "#"))
    assert json.loads(stop_message(SID, CALL, ACCOUNT, 6)) == json.loads(stop(6))


def test_builders_round_trip_through_the_parser() -> None:
    stream = feed(
        connected_message(),
        start_message(SID, CALL, ACCOUNT, tracks=("inbound",), custom_parameters={"intent": "x"}),
        media_message(SID, "inbound", 1, 0, TONE, 2),
        dtmf_message(SID, "*", 3),
        mark_message(SID, "cxguard.authenticated", 4),
        stop_message(SID, CALL, ACCOUNT, 5),
    )
    events = stream.events_received()
    assert events[1:] == [
        ControlEvent("intent", 0.0, {"intent": "x"}),
        AudioChunk("customer", TONE, 0.0),
        Dtmf("*", 0.0),
        Mark("cxguard.authenticated"),
        ControlEvent("authenticated", 0.0),
        CallEnded("stop", 0.0),
    ]


def test_going_away_ends_the_call_and_closes_with_1001() -> None:
    stream = feed(CONNECTED, START, media(2, "inbound", 1, 0))
    stream.events_received()
    stream.going_away()
    (ended,) = stream.events_received()
    assert isinstance(ended, CallEnded) and ended.reason == "shutdown"
    assert stream.close == Close(CloseCode.GOING_AWAY, "server shutting down")
    assert not stream.awaits_peer()
    stream.receive_text(media(3, "inbound", 2, 20))  # input after that is ignored
    assert stream.events_received() == [] and stream.error is None
