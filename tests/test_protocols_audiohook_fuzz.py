"""Fuzzing AudioHook: nothing escapes the session (every violation is recorded as an
``AudioHookProtocolError`` value with documented codes, never an internal error), only
``AuthenticationError`` escapes the upgrade check, and what the session sends stays a
well-numbered stream that the project's AudioHook client accepts without a problem.

Inputs are random frames, Genesys-like message streams whose ``seq`` is sometimes wrong and
whose fields are sometimes replaced by random JSON, and random or broken upgrade headers.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.errors import AudioHookProtocolError, AuthenticationError
from cxguard.model import AudioChunk, CallEnded, CallStarted, Gap, ProtocolEvent
from cxguard.protocols import audiohook_messages as wire
from cxguard.protocols.audiohook import AudioHookOptions, AudioHookSession
from cxguard.protocols.audiohook_auth import (
    AudioHookCredential,
    CredentialStore,
    TtlNonceStore,
    authenticate_request,
    sign_request,
)
from cxguard.protocols.audiohook_messages import AudioHookCode
from cxguard.protocols.base import CloseCode
from cxguard.simulate.audiohook import AudioHookClient, interleave_stereo, open_message

ORG = "d7934305-0972-4844-938e-9060eef73d05"
SESSION = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
CONVERSATION = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
EVENT_TYPES = get_args(ProtocolEvent)
FUZZ = settings(max_examples=200, database=None, deadline=None)
SMALL = AudioHookOptions(max_message_bytes=4096)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
durations = st.sampled_from(
    ["PT0S", "PT0.02S", "PT1.5S", "PT.5S", "PT9999S"] * 3
    + ["PT1e3S", "-PT1S", "PT999999999999.999999S", ""]
)


def _client_message(kind: str, seq: int, serverseq: int, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "2",
        "id": SESSION,
        "type": kind,
        "seq": seq,
        "serverseq": serverseq,
        "position": "PT0S",
        "parameters": params,
    }


def _parameters(kind: str, draw: Any) -> dict[str, Any]:
    if kind == "open":
        conversation = draw(st.sampled_from([CONVERSATION] * 4 + [wire.NULL_UUID]))
        text = open_message(SESSION, organization_id=ORG, conversation_id=conversation)
        parameters: dict[str, Any] = json.loads(text)["parameters"]
        return parameters
    if kind in ("resumed", "discarded"):
        return {"start": draw(durations), "discarded": draw(durations)}
    if kind == "close":
        return {"reason": draw(st.sampled_from([*wire.CLOSE_REASONS, "bored"]))}
    if kind == "update":
        return {"language": "en-US"}
    if kind == "error":
        return {"code": draw(st.sampled_from([400, 500, 99, 10000])), "message": "m"}
    return {}


@st.composite
def genesys_streams(draw: Any) -> list[str | bytes]:
    """A plausible client: usually opens first, right seq most of the time, audio frames of
    the right width, and now and then a wrong seq, a random field or random text."""
    frames: list[str | bytes] = []
    seq = 0
    if draw(st.integers(0, 4)):
        seq = 1
        frames.append(json.dumps(_client_message("open", 1, 0, _parameters("open", draw))))
    kinds = ["ping", "paused", "resumed", "discarded", "update", "error", "close"]
    for _ in range(draw(st.integers(1, 12))):
        choice = draw(st.integers(0, 9))
        if choice < 4:
            width = draw(st.sampled_from([2, 2, 2, 1, 3]))
            frames.append(draw(st.binary(max_size=64)) * width)
            continue
        if choice == 4:
            frames.append(draw(st.text(max_size=40) | json_values.map(json.dumps)))
            continue
        kind = draw(st.sampled_from([*kinds, *kinds, "open", "opened", "pong"]))
        seq += 1
        actual = seq + draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, 1, -1]))
        serverseq = draw(st.sampled_from([0, 1, 1, 1, 9]))
        message = _client_message(kind, actual, serverseq, _parameters(kind, draw))
        if draw(st.integers(0, 7)) == 0:
            key = draw(st.sampled_from([*message, "extra"]))
            message[key] = draw(json_values)
        if draw(st.integers(0, 9)) == 0:
            params = message["parameters"]
            if isinstance(params, dict) and params:
                params[draw(st.sampled_from(sorted(params)))] = draw(json_values)
        frames.append(json.dumps(message))
    return frames


DOCUMENTED_CLOSES = {
    CloseCode.PROTOCOL_ERROR,
    CloseCode.UNSUPPORTED_DATA,
    CloseCode.INVALID_PAYLOAD,
    CloseCode.POLICY_VIOLATION,
    CloseCode.MESSAGE_TOO_BIG,
}


def feed(session: AudioHookSession, frames: list[str | bytes]) -> list[ProtocolEvent]:
    events: list[ProtocolEvent] = []
    for frame in frames:
        if isinstance(frame, bytes):
            session.receive_bytes(frame)
        else:
            session.receive_text(frame)
        error = session.error
        if error is not None:
            assert isinstance(error, AudioHookProtocolError), error
            assert error.close_code in DOCUMENTED_CLOSES
            assert error.code in set(AudioHookCode)
            assert session.state in ("failed", "unauthorized", "closed")
            assert session.close is not None and session.close.code == error.close_code
        events += session.events_received()
    return events


def check_invariants(session: AudioHookSession, events: list[ProtocolEvent]) -> None:
    frames = session.data_to_send()
    sent = [json.loads(frame) for frame in frames]
    client = AudioHookClient(session_id=sent[0]["id"] if sent else SESSION)
    client.seq = max([m["clientseq"] for m in sent], default=0)
    for frame in frames:
        client.receive_text(frame)
    assert client.problems == []
    assert [m["seq"] for m in sent] == list(range(1, len(sent) + 1))
    assert all(m["version"] == "2" and isinstance(m["clientseq"], int) for m in sent)
    assert [m["clientseq"] for m in sent] == sorted(m["clientseq"] for m in sent)
    assert sum(m["type"] == "disconnect" for m in sent) <= 1
    assert sum(m["type"] == "closed" for m in sent) <= 1
    assert all(isinstance(e, EVENT_TYPES) for e in events)
    started = [i for i, e in enumerate(events) if isinstance(e, CallStarted)]
    ended = [i for i, e in enumerate(events) if isinstance(e, CallEnded)]
    assert len(started) <= 1 and len(ended) <= len(started)
    if ended:
        assert ended[0] == len(events) - 1 and started[0] == 0
    elif events:
        assert started == [0]
    times = [e.start_ms if isinstance(e, AudioChunk | Gap) else None for e in events]
    known = [t for t in times if t is not None]
    assert known == sorted(known)
    assert all(e.end_ms >= e.start_ms for e in events if isinstance(e, Gap))


@FUZZ
@given(frames=st.lists(st.binary(max_size=40) | st.text(max_size=60), max_size=8))
def test_random_frames(frames: list[str | bytes]) -> None:
    session = AudioHookSession(SMALL)
    check_invariants(session, feed(session, frames))


@FUZZ
@given(frames=genesys_streams())
def test_genesys_like_streams(frames: list[str | bytes]) -> None:
    session = AudioHookSession(SMALL, organization_id=ORG, session_id=SESSION)
    check_invariants(session, feed(session, frames))


same_length_pairs = st.binary(max_size=300).flatmap(
    lambda ext: st.tuples(st.just(ext), st.binary(min_size=len(ext), max_size=len(ext)))
)


@FUZZ
@given(pair=same_length_pairs)
def test_stereo_round_trip(pair: tuple[bytes, bytes]) -> None:
    external, internal = pair
    session = AudioHookSession()
    session.receive_text(open_message(SESSION, organization_id=ORG, conversation_id=CONVERSATION))
    session.events_received()
    session.receive_bytes(interleave_stereo(external, internal))
    chunks = session.events_received()
    if external:
        assert chunks == [AudioChunk("customer", external, 0.0), AudioChunk("agent", internal, 0.0)]
    else:
        assert chunks == []


CREDENTIALS = CredentialStore([AudioHookCredential("acme", "key-1", b"secret-1")])
GOOD = sign_request(
    path="/ws",
    authority="a.example",
    api_key="key-1",
    client_secret=b"secret-1",
    organization_id=ORG,
    session_id=SESSION,
    correlation_id="c",
    created=1_700_000_000,
    nonce="n" * 24,
)
header_names = st.sampled_from(
    [*GOOD, "Host", "signature", "SIGNATURE-INPUT", "x-api-key", "x"]
) | st.text(max_size=10)


@FUZZ
@given(
    headers=st.lists(st.tuples(header_names, st.text(max_size=80)), max_size=8),
    replace=st.dictionaries(st.sampled_from(sorted(GOOD)), st.text(max_size=200), max_size=3),
    cut=st.integers(0, 300),
)
def test_authentication_only_raises_its_own_error(
    headers: list[tuple[str, str]], replace: dict[str, str], cut: int
) -> None:
    mutated = GOOD | {k: v[:cut] for k, v in replace.items()}
    for candidate in (headers, [*mutated.items(), *headers]):
        try:
            auth = authenticate_request(
                candidate,
                method="GET",
                path="/ws",
                authority="a.example",
                now=1_700_000_001,
                credentials=CREDENTIALS,
                nonces=TtlNonceStore(),
            )
        except AuthenticationError as exc:
            assert exc.status in (401, 403)
        else:
            assert auth.tenant == "acme" and auth.signed
