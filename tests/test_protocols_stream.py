"""The generic media websocket (``/stream``) fed raw frames: each first-message shape, audio
de-interleaving, controls, the end, violations recorded with their close codes, fuzzing."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.model import AudioChunk, CallEnded, CallStarted, ControlEvent, Dtmf, Mark
from cxguard.protocols.base import Close, CloseCode
from cxguard.protocols.caller_id import HASH_PREFIX
from cxguard.protocols.stream import GenericStream, StreamOptions
from cxguard.simulate.stream import StreamClient


def feed(*frames: str | bytes, options: StreamOptions | None = None) -> GenericStream:
    stream = GenericStream(options or StreamOptions())
    for frame in frames:
        if isinstance(frame, bytes):
            stream.receive_bytes(frame)
        else:
            stream.receive_text(frame)
    return stream


def start(**fields: Any) -> str:
    message = {"event": "start", "call_id": "c1", "encoding": "l16", "sample_rate": 16000}
    message |= {"channels": 2}
    message.update(fields)
    return json.dumps({k: v for k, v in message.items() if v is not None})


def l16(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def test_cxguard_start_then_stereo_l16_is_split_by_the_channel_map() -> None:
    stream = feed(
        start(tenant="acme", parameters={"queue": "billing"}),
        l16(1, -1, 2, -2, 3, -3),  # customer, agent, customer, agent, …
    )
    started, customer, agent = stream.events_received()
    assert isinstance(started, CallStarted)
    assert (started.encoding, started.sample_rate) == ("L16", 16000)
    info = started.info
    assert (info.call_id, info.tenant, info.source) == ("c1", "acme", "stream")
    assert dict(info.parameters) == {"queue": "billing", "tenant": "acme"}
    assert customer == AudioChunk("customer", l16(1, 2, 3), 0.0, "L16", 16000)
    assert agent == AudioChunk("agent", l16(-1, -2, -3), 0.0, "L16", 16000)
    stream.receive_bytes(l16(0, 0) * 16)
    assert [e.start_ms for e in stream.events_received()] == [3 / 16, 3 / 16]  # type: ignore[union-attr]
    assert stream.position_ms == 19 / 16


def test_mulaw_8k_reversed_channel_map() -> None:
    stream = feed(
        start(encoding="mulaw", sample_rate=8000, channel_map=["agent", "customer"]),
        b"AaBb",
    )
    _, first, second = stream.events_received()
    assert first == AudioChunk("agent", b"AB", 0.0, "PCMU", 8000)
    assert second == AudioChunk("customer", b"ab", 0.0, "PCMU", 8000)


def test_vonage_first_message_headers_become_the_call() -> None:
    first = {
        "event": "websocket:connected",
        "content-type": "audio/l16;rate=16000",
        "call_id": "vonage-uuid",
        "speaker": "agent",
        "queue": "billing",
        "priority": 2,
        "From": "447700900000",
    }
    stream = feed(json.dumps(first), l16(5, 6, 7))
    started, chunk = stream.events_received()
    assert isinstance(started, CallStarted) and started.info.call_id == "vonage-uuid"
    assert dict(started.info.parameters) == {"queue": "billing", "priority": "2"}
    assert chunk == AudioChunk("agent", l16(5, 6, 7), 0.0, "L16", 16000)
    stream.receive_text(json.dumps({"event": "websocket:dtmf", "digit": "7", "duration": 50}))
    stream.receive_text(json.dumps({"event": "websocket:notify", "payload": {}}))
    assert stream.events_received() == [Dtmf("7", 3 / 16)]
    stream.receive_eof()  # Vonage ends by closing the websocket
    assert stream.events_received() == [CallEnded("closed", 3 / 16)]
    assert stream.error is None


def test_audio_fork_metadata_has_no_event_and_defaults_to_l16() -> None:
    metadata = {"call_id": "fs-uuid", "sample_rate": 8000, "channels": 2, "callid": "sip-1"}
    stream = feed(json.dumps(metadata), l16(1, 2))
    started, customer, agent = stream.events_received()
    assert isinstance(started, CallStarted) and started.encoding == "L16"
    assert (customer.speaker, agent.speaker) == ("customer", "agent")  # type: ignore[union-attr]


def test_controls_marks_dtmf_and_stop() -> None:
    stream = feed(
        start(channels=1, speaker="agent", parameters={"authenticated": "true"}),
        l16(0) * 160,
        json.dumps({"event": "control", "name": "intent", "value": "billing"}),
        json.dumps({"event": "control", "name": "intent"}),
        json.dumps({"event": "mark", "name": "cxguard.handoff"}),
        json.dumps({"event": "dtmf", "digit": "#"}),
        json.dumps({"event": "stop"}),
    )
    events = stream.events_received()
    assert events[1] == ControlEvent("authenticated", 0.0)
    assert events[3:] == [
        ControlEvent("intent", 10.0, {"intent": "billing"}),
        ControlEvent("invalid_control", 10.0, {"reason": "intent needs a value"}),
        Mark("cxguard.handoff"),
        ControlEvent("handoff", 10.0),
        Dtmf("#", 10.0),
        CallEnded("stop", 10.0),
    ]
    assert stream.close == Close(CloseCode.NORMAL_CLOSURE, "stop")
    stream.receive_bytes(l16(1))  # after stop: ignored
    assert stream.events_received() == []


def test_a_signed_tenant_wins_and_caller_identity_is_hashed() -> None:
    options = StreamOptions(tenant="proven", caller_id_key=b"k")
    stream = feed(start(tenant="claimed", parameters={"caller_id": "+1 555 0100"}), options=options)
    (started,) = stream.events_received()
    assert isinstance(started, CallStarted) and started.info.tenant == "proven"
    assert started.info.parameters["caller_id"].startswith(HASH_PREFIX)
    assert started.info.parameters["tenant"] == "claimed"


ERRORS = [
    ([], l16(1), CloseCode.PROTOCOL_ERROR, "audio before the start"),
    ([], json.dumps({"event": "dtmf", "digit": "1"}), CloseCode.PROTOCOL_ERROR, "before the start"),
    ([start()], start(), CloseCode.PROTOCOL_ERROR, "second start"),
    ([start()], json.dumps({"event": "hangup"}), CloseCode.UNSUPPORTED_DATA, "unknown event"),
    ([], start(encoding="opus"), CloseCode.UNSUPPORTED_DATA, "not mulaw or l16"),
    ([], start(sample_rate=44100), CloseCode.UNSUPPORTED_DATA, "not 8000 or 16000"),
    ([], start(channels=3), CloseCode.UNSUPPORTED_DATA, "only 1 or 2"),
    (
        [],
        json.dumps({"event": "websocket:connected", "content-type": "audio/pcmu", "call_id": "x"}),
        CloseCode.UNSUPPORTED_DATA,
        "is not audio/l16",
    ),
    ([], "{", CloseCode.INVALID_PAYLOAD, "not valid JSON"),
    ([], "[1]", CloseCode.INVALID_PAYLOAD, "not a JSON object"),
    ([], start(call_id=None), CloseCode.INVALID_PAYLOAD, "'call_id' must be a string"),
    ([], start(call_id=""), CloseCode.INVALID_PAYLOAD, "1 to 128"),
    ([], start(sample_rate="16000"), CloseCode.INVALID_PAYLOAD, "must be an integer"),
    ([], start(channels=True), CloseCode.INVALID_PAYLOAD, "must be an integer"),
    ([], start(channel_map=["agent", "agent"]), CloseCode.INVALID_PAYLOAD, "channel_map"),
    ([], start(channels=1, speaker="bot"), CloseCode.INVALID_PAYLOAD, "'speaker'"),
    ([], start(parameters=[1]), CloseCode.INVALID_PAYLOAD, "'parameters'"),
    ([], start(parameters={"k": "v" * 2000}), CloseCode.INVALID_PAYLOAD, "too long"),
    ([], start(tenant="\ud800"), CloseCode.INVALID_PAYLOAD, "lone surrogate"),
    ([], start(parameters={"\udc00": "x"}), CloseCode.INVALID_PAYLOAD, "lone surrogate"),
    ([start()], l16(1, 2, 3), CloseCode.INVALID_PAYLOAD, "not whole 4-byte samples"),
    ([start()], json.dumps({"event": "dtmf", "digit": "12"}), CloseCode.INVALID_PAYLOAD, "dtmf"),
    ([start()], json.dumps({"event": 5}), CloseCode.INVALID_PAYLOAD, "'event'"),
    (
        [start()],
        json.dumps({"event": "control", "name": "x", "value": 1}),
        CloseCode.INVALID_PAYLOAD,
        "'value'",
    ),
    ([start()], b"\x00" * 70_000, CloseCode.MESSAGE_TOO_BIG, "too large"),
    ([], json.dumps({"pad": "x" * 70_000}), CloseCode.MESSAGE_TOO_BIG, "too large"),
]


@pytest.mark.parametrize(("before", "frame", "code", "fragment"), ERRORS)
def test_violations_are_recorded_with_their_close_code(
    before: list[str], frame: str | bytes, code: CloseCode, fragment: str
) -> None:
    stream = feed(*before)
    started = bool(stream.events_received())
    feed_one = stream.receive_bytes if isinstance(frame, bytes) else stream.receive_text
    feed_one(frame)  # type: ignore[arg-type]
    assert stream.error is not None and fragment in str(stream.error)
    assert stream.close is not None and stream.close.code == code == stream.error.close_code
    assert stream.events_received() == ([CallEnded("protocol_error", 0.0)] if started else [])
    stream.receive_text(start())
    assert stream.events_received() == []


FUZZ = settings(max_examples=300, database=None, deadline=None)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["start", "websocket:connected", "control", "stop", "x"]),
        "call_id": st.text(max_size=5) | json_values,
        "encoding": st.sampled_from(["mulaw", "l16", "opus"]) | json_values,
        "sample_rate": st.sampled_from([8000, 16000, 11025]) | json_values,
        "channels": st.sampled_from([1, 2, 3]) | json_values,
        "content-type": st.sampled_from(["audio/l16;rate=8000", "audio/l16;rate=9"]),
        "speaker": st.sampled_from(["agent", "customer", "x"]),
        "name": st.text(max_size=12),
        "digit": st.text(max_size=2),
    },
)


@FUZZ
@given(
    frames=st.lists(
        st.binary(max_size=64) | fields.map(json.dumps) | st.text(max_size=30), max_size=8
    )
)
def test_nothing_escapes_and_every_error_is_documented(frames: list[str | bytes]) -> None:
    stream = GenericStream(StreamOptions(max_message_bytes=4096))
    events = []
    for frame in [start(), *frames]:
        if isinstance(frame, bytes):
            stream.receive_bytes(frame)
        else:
            stream.receive_text(frame)
        events += stream.events_received()
    if stream.error is not None:
        assert stream.error.close_code in {1002, 1003, 1007, 1009}
    stream.receive_eof()
    events += stream.events_received()
    assert [type(e) for e in events].count(CallStarted) == 1
    assert [type(e) for e in events].count(CallEnded) == 1


@pytest.mark.parametrize(
    ("style", "encoding", "channels"),
    [
        ("cxguard", "L16", ("customer", "agent")),
        ("cxguard", "PCMU", ("agent", "customer")),
        ("audio_fork", "L16", ("customer", "agent")),
        ("vonage", "L16", ("customer",)),
        ("cxguard", "L16", ("agent",)),
    ],
)
def test_the_client_round_trips_in_every_style(
    style: Any, encoding: Any, channels: tuple[str, ...]
) -> None:
    client = StreamClient(
        encoding=encoding, sample_rate=8000, channel_map=channels, style=style, tenant="t"
    )
    stream = GenericStream()
    client.start()
    width = 2 if encoding == "L16" else 1
    customer = bytes(i % 256 for i in range(160 * width))
    agent = bytes((i * 7 + 3) % 256 for i in range(160 * width))
    client.send_audio(customer, agent)
    client.send_dtmf("3")
    client.finish()
    for frame in client.data_to_send():
        if isinstance(frame, bytes):
            stream.receive_bytes(frame)
        else:
            stream.receive_text(frame)
    stream.receive_eof()
    events = stream.events_received()
    assert stream.error is None
    chunks = {e.speaker: e.payload for e in events if isinstance(e, AudioChunk)}
    wanted = {"customer": customer, "agent": agent}
    assert chunks == {speaker: wanted[speaker] for speaker in channels}
    assert Dtmf("3", 20.0) in events
    assert events[-1] == CallEnded("stop" if style == "cxguard" else "closed", 20.0)
