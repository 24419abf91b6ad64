"""Fuzzing the Twilio parser: nothing ever leaves ``receive_*`` — every violation is recorded
as a ``TwilioProtocolError`` value with a documented close code, and never an internal error.

Inputs are random text, random bytes, random JSON, and valid calls that are then broken at
the JSON level (a field deleted or replaced), the text level (characters cut or inserted)
and the stream level (frames swapped, repeated, dropped). Valid calls must parse cleanly.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.errors import TwilioProtocolError
from cxguard.model import AudioChunk, CallEnded, CallStarted, ProtocolEvent
from cxguard.protocols.base import CloseCode
from cxguard.protocols.twilio import TwilioOptions, TwilioStream
from cxguard.protocols.twilio_messages import EVENT_NAMES, TrackName
from cxguard.simulate.twilio import (
    connected_message,
    dtmf_message,
    mark_message,
    media_message,
    start_message,
    stop_message,
)

SID = "MZ00000000000000000000000000000001"
CALL = "CA00000000000000000000000000000001"
ACCOUNT = "AC00000000000000000000000000000001"
EVENT_TYPES = get_args(ProtocolEvent)
FUZZ = settings(max_examples=200, database=None, deadline=None)
SMALL = TwilioOptions(max_message_bytes=2048, max_payload_bytes=512)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
counters = st.one_of(
    st.integers(0, 10**16).map(str), st.sampled_from(["", "-1", "1.0", "1e3", " 1", "\u0661"])
)
known_shaped = st.fixed_dictionaries(
    {"event": st.sampled_from([*EVENT_NAMES, "clear", "Media", ""])},
    optional={
        "sequenceNumber": counters | json_values,
        "streamSid": st.sampled_from([SID, "MZx"]) | json_values,
        "start": json_values,
        "media": st.fixed_dictionaries(
            {},
            optional={
                "track": st.sampled_from(["inbound", "outbound", "both"]) | json_values,
                "chunk": counters | json_values,
                "timestamp": counters | json_values,
                "payload": st.sampled_from(["", "/w==", "AQI", "!!"]) | json_values,
            },
        ),
        "mark": json_values,
        "dtmf": json_values,
        "stop": json_values,
    },
)


DOCUMENTED = {
    CloseCode.PROTOCOL_ERROR,
    CloseCode.UNSUPPORTED_DATA,
    CloseCode.INVALID_PAYLOAD,
    CloseCode.MESSAGE_TOO_BIG,
}


def feed_all(stream: TwilioStream, frames: list[str]) -> list[ProtocolEvent]:
    """Feed every frame (nothing may raise); once failed, the stream ignores the rest."""
    events: list[ProtocolEvent] = []
    first_error = None
    for frame in frames:
        stream.receive_text(frame)
        events.extend(stream.events_received())
        if first_error is None and stream.error is not None:
            first_error = stream.error
            assert isinstance(first_error, TwilioProtocolError)
            assert first_error.close_code in DOCUMENTED, first_error
            assert stream.closed and stream.close is not None
            assert stream.close.code == first_error.close_code
        assert stream.error is first_error
    assert all(isinstance(event, EVENT_TYPES) for event in events)
    started = [i for i, e in enumerate(events) if isinstance(e, CallStarted)]
    ended = [i for i, e in enumerate(events) if isinstance(e, CallEnded)]
    assert len(started) <= 1 and len(ended) <= len(started)
    if first_error is not None and started:
        assert ended and events[-1] == CallEnded("protocol_error", stream.position_ms)
    return events


@st.composite
def valid_calls(draw: st.DrawFn) -> tuple[list[str], list[tuple[TrackName, bytes]]]:
    tracks: tuple[TrackName, ...] = draw(
        st.sampled_from([("inbound",), ("outbound",), ("inbound", "outbound")])
    )
    params = draw(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
    frames = [connected_message(), start_message(SID, CALL, ACCOUNT, tracks, params)]
    sent: list[tuple[TrackName, bytes]] = []
    seq, chunk, clock = 1, dict.fromkeys(tracks, 0), dict.fromkeys(tracks, 0)
    for _ in range(draw(st.integers(0, 8))):
        seq += draw(st.integers(1, 2))
        kind = draw(st.sampled_from(["media", "media", "mark", "dtmf"]))
        if kind == "media":
            track = draw(st.sampled_from(tracks))
            chunk[track] += draw(st.integers(1, 2))
            clock[track] += draw(st.sampled_from([0, 20, 40]))
            payload = draw(st.binary(max_size=200))
            frames.append(media_message(SID, track, chunk[track], clock[track], payload, seq))
            sent.append((track, payload))
        elif kind == "mark":
            frames.append(mark_message(SID, draw(st.text(max_size=16)), seq))
        else:
            frames.append(dtmf_message(SID, draw(st.sampled_from("0123456789*#")), seq))
    frames.append(stop_message(SID, CALL, ACCOUNT, seq + 1))
    return frames, sent


# --------------------------------------------------------------------------- random input


@FUZZ
@given(text=st.text(max_size=400), started=st.booleans())
def test_random_text(text: str, started: bool) -> None:
    stream = TwilioStream(SMALL)
    if started:
        stream.receive_text(start_message(SID, CALL, ACCOUNT))
    feed_all(stream, [text])


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    stream = TwilioStream()
    stream.receive_bytes(data)
    assert stream.error is not None and stream.error.close_code == CloseCode.UNSUPPORTED_DATA
    assert stream.closed
    feed_all(TwilioStream(SMALL), [data.decode("utf-8", "surrogateescape")])


@FUZZ
@given(values=st.lists(json_values | known_shaped, min_size=1, max_size=4), started=st.booleans())
def test_random_json(values: list[Any], started: bool) -> None:
    stream = TwilioStream(SMALL)
    if started:
        stream.receive_text(start_message(SID, CALL, ACCOUNT))
    feed_all(stream, [json.dumps(value) for value in values])


# --------------------------------------------------------------------------- broken valid calls


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node inside a decoded JSON value, as key paths."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def mutate_json(data: st.DataObject, value: Any) -> Any:
    """Delete or replace one node, chosen evenly among all nodes of ``value``."""
    path = data.draw(st.sampled_from(paths(value)[1:] or [()]))
    if not path:
        return data.draw(json_values)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(counters | st.text(max_size=10) | json_values)
    return value


@FUZZ
@given(call=valid_calls(), data=st.data())
def test_valid_calls_broken_anywhere(
    call: tuple[list[str], list[tuple[TrackName, bytes]]], data: st.DataObject
) -> None:
    frames = list(call[0])
    index = data.draw(st.integers(0, len(frames) - 1))
    how = data.draw(
        st.sampled_from(["json", "json", "json", "cut", "insert", "swap", "repeat", "drop"])
    )
    frame = frames[index]
    if how == "json":
        frames[index] = json.dumps(mutate_json(data, json.loads(frame)))
    elif how == "cut":
        at = data.draw(st.integers(0, len(frame)))
        frames[index] = frame[:at] + frame[at + data.draw(st.integers(1, 8)) :]
    elif how == "insert":
        at = data.draw(st.integers(0, len(frame)))
        frames[index] = frame[:at] + data.draw(st.text(min_size=1, max_size=4)) + frame[at:]
    elif how == "swap":
        other = data.draw(st.integers(0, len(frames) - 1))
        frames[index], frames[other] = frames[other], frames[index]
    elif how == "repeat":
        frames.insert(index, frame)
    else:
        del frames[index]
    feed_all(TwilioStream(SMALL), frames)


@FUZZ
@given(call=valid_calls())
def test_valid_calls_parse_cleanly(call: tuple[list[str], list[tuple[TrackName, bytes]]]) -> None:
    frames, sent = call
    stream = TwilioStream()
    for frame in frames:
        stream.receive_text(frame)
    events = stream.events_received()
    assert isinstance(events[0], CallStarted) and isinstance(events[-1], CallEnded)
    speaker = {"inbound": "customer", "outbound": "agent"}
    chunks = [(e.speaker, e.payload) for e in events if isinstance(e, AudioChunk)]
    assert chunks == [(speaker[track], payload) for track, payload in sent]
    assert stream.closed


CANONICAL = [
    connected_message(),
    start_message(SID, CALL, ACCOUNT, custom_parameters={"tenant": "acme"}),
    media_message(SID, "inbound", 1, 0, b"\xff" * 160, 2),
    media_message(SID, "outbound", 1, 0, b"\x7f" * 160, 3),
    mark_message(SID, "cxguard.authenticated", 4),
    dtmf_message(SID, "5", 5),
    stop_message(SID, CALL, ACCOUNT, 6),
]
NODES = [
    (index, path) for index, frame in enumerate(CANONICAL) for path in paths(json.loads(frame))[1:]
]


@pytest.mark.parametrize(
    ("index", "path"), NODES, ids=[f"{i}:{'.'.join(map(str, p))}" for i, p in NODES]
)
@settings(max_examples=25, database=None, deadline=None)
@given(replacement=st.none() | counters | st.text(max_size=10) | json_values)
def test_every_field_of_a_call_replaced_or_deleted(
    index: int, path: tuple[Any, ...], replacement: Any
) -> None:
    frames = list(CANONICAL)
    message = json.loads(frames[index])
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    if replacement is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    frames[index] = json.dumps(message)
    feed_all(TwilioStream(SMALL), frames)
