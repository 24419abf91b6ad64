"""The protocol clients (``cxguard.simulate``) against the server cores, with no I/O between.

The clients are the one place that numbers what a platform sends; here they talk to the
real ``TwilioStream``/``AudioHookSession`` and each checks the other. The hostile streams
built on them must end with the close code their kind documents.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import pytest

from cxguard.model import AudioChunk, CallEnded, CallStarted, ControlEvent, Gap, ProtocolEvent
from cxguard.protocols.audiohook import AudioHookSession
from cxguard.protocols.base import CloseCode, MediaStream
from cxguard.protocols.stream import GenericStream
from cxguard.protocols.twilio import TwilioStream
from cxguard.simulate.audiohook import AudioHookClient, media_offer
from cxguard.simulate.base import MediaClient
from cxguard.simulate.hostile import (
    AUDIOHOOK_FATAL,
    STREAM_FATAL,
    TWILIO_FATAL,
    audiohook_connection,
    stream_connection,
    twilio_connection,
)
from cxguard.simulate.twilio import TwilioClient

ROOM = Path(__file__).resolve().parents[1] / "cxguard" / "simulate"
TONE = bytes(range(160))


def pump(client: MediaClient, server: MediaStream) -> list[ProtocolEvent]:
    """Deliver everything each side has queued until both are quiet."""
    events: list[ProtocolEvent] = []
    while frames := client.data_to_send():
        for frame in frames:
            if isinstance(frame, bytes):
                server.receive_bytes(frame)
            else:
                server.receive_text(frame)
            events += server.events_received()
            for reply in server.data_to_send():
                client.receive_text(reply)
    return events


def test_the_client_room_imports_only_model_errors_and_protocols() -> None:
    allowed = ("cxguard.model", "cxguard.errors", "cxguard.protocols", "cxguard.simulate")
    offenders = []
    for path in sorted(ROOM.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in ("asyncio", "websockets", "socket") or (
                    top == "cxguard" and not name.startswith(allowed)
                ):
                    offenders.append(f"{path.name} imports {name}")
    assert offenders == []


# --------------------------------------------------------------------------- Twilio


def test_twilio_client_numbers_like_twilio() -> None:
    client = TwilioClient(call_sid="CA1", stream_sid="MZ1", custom_parameters={"tenant": "t"})
    client.start()
    client.send_audio(TONE, TONE[::-1])
    client.send_audio(TONE[:80], TONE[:80])
    client.send_mark("cxguard.authenticated")
    client.send_dtmf("5")
    client.finish()
    client.finish()  # once only
    sent = [json.loads(str(f)) for f in client.data_to_send()]
    assert [m["event"] for m in sent] == [
        "connected",
        "start",
        "media",
        "media",
        "media",
        "media",
        "mark",
        "dtmf",
        "stop",
    ]
    assert [m.get("sequenceNumber") for m in sent[1:]] == [str(n) for n in range(1, 9)]
    media = [m["media"] for m in sent if m["event"] == "media"]
    assert [(m["track"], m["chunk"], m["timestamp"]) for m in media] == [
        ("inbound", "1", "0"),
        ("outbound", "1", "0"),
        ("inbound", "2", "20"),
        ("outbound", "2", "20"),
    ]
    assert client.position_ms("inbound") == 30.0 and client.finished()


def test_a_twilio_call_through_the_client_parses_cleanly() -> None:
    client = TwilioClient(custom_parameters={"authenticated": "true"})
    stream = TwilioStream()
    client.start()
    for _ in range(3):
        client.send_audio(TONE, b"\xff" * 160)
    client.finish()
    events = pump(client, stream)
    assert isinstance(events[0], CallStarted) and events[0].info.call_id == client.call_sid
    assert events[1] == ControlEvent("authenticated", 0.0)
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert [(c.speaker, c.start_ms) for c in chunks] == [
        ("customer", 0.0),
        ("agent", 0.0),
        ("customer", 20.0),
        ("agent", 20.0),
        ("customer", 40.0),
        ("agent", 40.0),
    ]
    assert events[-1] == CallEnded("stop", 40.0)
    assert stream.error is None and client.problems == []


def test_the_twilio_client_notes_a_server_that_talks_back() -> None:
    client = TwilioClient()
    client.receive_text('{"event": "clear"}')
    assert client.problems == ["server sent a message on a listen-only stream"]


# --------------------------------------------------------------------------- AudioHook


def test_an_audiohook_call_through_the_client() -> None:
    client = AudioHookClient(custom_config={"intent": "billing"})
    session = AudioHookSession()
    client.start()
    events = pump(client, session)
    assert client.ready() and client.channels == ("external", "internal")
    client.send_audio(TONE, TONE[::-1])  # customer on external, agent on internal
    client.ping()
    client.pause()
    client.send_audio(TONE, TONE)  # not sent: counted as discarded
    client.resume()
    client.send_audio(TONE[:8], TONE[:8])
    client.finish()
    events += pump(client, session)
    assert client.finished() and client.problems == [] and session.error is None
    assert [m["type"] for m in client.messages_received] == ["opened", "pong", "closed"]
    assert [m["seq"] for m in client.messages_received] == [1, 2, 3]
    assert isinstance(events[0], CallStarted)
    assert events[0].info.call_id == client.conversation_id
    assert ControlEvent("intent", 0.0, {"intent": "billing"}) in events
    assert AudioChunk("customer", TONE, 0.0) in events and AudioChunk("agent", TONE[::-1], 0.0)
    assert Gap(20.0, 40.0, "client_pause") in events
    assert AudioChunk("customer", TONE[:8], 40.0) in events
    assert events[-1] == CallEnded("end", 41.0)


def test_the_audiohook_client_answers_the_server_as_genesys_does() -> None:
    client = AudioHookClient()
    session = AudioHookSession()
    client.start()
    pump(client, session)
    session.request_pause()
    for reply in session.data_to_send():
        client.receive_text(reply)
    assert client.state == "paused"
    pump(client, session)
    assert session.state == "paused"
    session.request_resume()
    for reply in session.data_to_send():
        client.receive_text(reply)
    pump(client, session)
    assert (client.state, session.state) == ("open", "active")
    session.disconnect("completed", "drain")
    for reply in session.data_to_send():
        client.receive_text(reply)
    assert client.state == "closing"
    pump(client, session)
    assert client.finished() and session.closed and client.problems == []


def test_the_audiohook_client_follows_the_chosen_medium() -> None:
    client = AudioHookClient(media=[media_offer(("internal",))])
    session = AudioHookSession()
    client.start()
    pump(client, session)
    assert client.channels == ("internal",)
    client.send_audio(TONE, TONE[::-1])
    assert client.data_to_send() == [TONE[::-1]]  # the agent's channel only


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ({"seq": 5}, "seq 5 does not follow 1"),
        ({"clientseq": 9}, "clientseq 9 is not between"),
        ({"type": "dance"}, "unknown type 'dance'"),
        ({"id": "00000000-0000-0000-0000-000000000001"}, "id is not the session id"),
        ({"version": "1"}, "version is not '2'"),
    ],
)
def test_the_audiohook_client_records_a_misbehaving_server(
    reply: dict[str, object], problem: str
) -> None:
    client = AudioHookClient()
    client.start()
    client.data_to_send()
    client.receive_text(
        json.dumps(
            {"version": "2", "id": client.session_id, "type": "opened", "seq": 1, "clientseq": 1}
            | {"parameters": {"media": [media_offer()], "startPaused": False}}
        )
    )
    pong = {"version": "2", "id": client.session_id, "type": "pong", "seq": 2, "clientseq": 1}
    client.receive_text(json.dumps(pong | {"parameters": {}} | reply))
    assert len(client.problems) == 1 and problem in client.problems[0]
    client.receive_text("not json")
    assert client.problems[-1] == "server message is not JSON"


def test_unequal_channels_are_refused() -> None:
    client = AudioHookClient()
    with pytest.raises(ValueError, match="differ"):
        client.send_audio(b"ab", b"c")


# --------------------------------------------------------------------------- hostile streams

EXPECTED = {
    ("twilio", "malformed_json"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "wrong_type"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "huge_frame"): CloseCode.MESSAGE_TOO_BIG,
    ("twilio", "big_payload"): CloseCode.MESSAGE_TOO_BIG,
    ("twilio", "bad_base64"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "surrogate"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "duplicate_seq"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "seq_backwards"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "chunk_repeat"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "timestamp_back"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "binary_frame"): CloseCode.UNSUPPORTED_DATA,
    ("twilio", "unknown_event"): CloseCode.UNSUPPORTED_DATA,
    ("twilio", "second_start"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "stream_sid_mismatch"): CloseCode.INVALID_PAYLOAD,
    ("twilio", "not_an_object"): CloseCode.INVALID_PAYLOAD,
    ("audiohook", "malformed_json"): CloseCode.INVALID_PAYLOAD,
    ("audiohook", "wrong_type"): CloseCode.PROTOCOL_ERROR,
    ("audiohook", "huge_frame"): CloseCode.MESSAGE_TOO_BIG,
    ("audiohook", "surrogate_error"): CloseCode.INVALID_PAYLOAD,
    ("audiohook", "surrogate_update"): CloseCode.INVALID_PAYLOAD,
    ("audiohook", "surrogate_key"): CloseCode.INVALID_PAYLOAD,
    ("audiohook", "seq_skip"): CloseCode.PROTOCOL_ERROR,
    ("audiohook", "seq_repeat"): CloseCode.PROTOCOL_ERROR,
    ("audiohook", "serverseq_ahead"): CloseCode.PROTOCOL_ERROR,
    ("audiohook", "odd_stereo"): CloseCode.INVALID_PAYLOAD,
    ("audiohook", "unknown_type"): CloseCode.PROTOCOL_ERROR,
    ("audiohook", "bad_duration"): CloseCode.PROTOCOL_ERROR,
    ("audiohook", "session_id_mismatch"): CloseCode.PROTOCOL_ERROR,
    ("audiohook", "audio_while_paused"): CloseCode.PROTOCOL_ERROR,
    ("stream", "malformed_json"): CloseCode.INVALID_PAYLOAD,
    ("stream", "audio_before_start"): CloseCode.PROTOCOL_ERROR,
    ("stream", "second_start"): CloseCode.PROTOCOL_ERROR,
    ("stream", "odd_frame"): CloseCode.INVALID_PAYLOAD,
    ("stream", "huge_frame"): CloseCode.MESSAGE_TOO_BIG,
    ("stream", "surrogate"): CloseCode.INVALID_PAYLOAD,
    ("stream", "unknown_event"): CloseCode.UNSUPPORTED_DATA,
    ("stream", "bad_format"): CloseCode.UNSUPPORTED_DATA,
    ("stream", "wrong_type"): CloseCode.INVALID_PAYLOAD,
}


def test_every_hostile_kind_has_a_documented_close_code() -> None:
    kinds = {("twilio", k) for k in TWILIO_FATAL} | {("audiohook", k) for k in AUDIOHOOK_FATAL}
    kinds |= {("stream", k) for k in STREAM_FATAL}
    assert kinds == set(EXPECTED)


@pytest.mark.parametrize("seed", range(4))
def test_hostile_streams_end_as_their_kind_says(seed: int) -> None:
    rng = random.Random(seed)
    seen = set()
    for _ in range(150):
        makers = (
            (twilio_connection, TwilioStream),
            (audiohook_connection, AudioHookSession),
            (stream_connection, GenericStream),
        )
        for make, core in makers:
            connection = make(rng)
            server: MediaStream = core()
            events: list[ProtocolEvent] = []
            for frame in connection.frames:
                if isinstance(frame, bytes):
                    server.receive_bytes(frame)
                else:
                    server.receive_text(frame)
                events += server.events_received()
                server.data_to_send()
            code = server.error.close_code if server.error else None
            assert code == EXPECTED.get((connection.protocol, connection.fatal or "")), connection
            server.receive_eof()
            events += server.events_received()
            # survivable abuse never ends a call early; every started call ends exactly once
            opens = 0 if connection.fatal in ("audio_before_start", "bad_format") else 1
            assert sum(isinstance(e, CallStarted) for e in events) == opens
            assert [type(e) for e in events].count(CallEnded) == opens
            seen.add((connection.protocol, connection.fatal))
            invalid = [e for e in events if isinstance(e, ControlEvent)]
            assert all(e.name != "intent" or e.data.get("intent") for e in invalid)
    assert len(seen) > 20
