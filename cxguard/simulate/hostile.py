"""Hostile media streams for fuzzing a server, built on the protocol clients (no I/O).

Each :func:`twilio_connection` / :func:`audiohook_connection` is one connection's worth of
frames: a valid opening (the client's own, so the stream gets past the first checks), a run
of valid media salted with *survivable* abuse (malformed control marks, unknown fields, client
errors with hostile text — a correct server records these and carries on), then usually one
*fatal* message of a kind drawn from :data:`TWILIO_FATAL` / :data:`AUDIOHOOK_FATAL` (a correct
server closes the stream with its protocol's error). Media is silence, so hostile streams
cost the server parsing, not speech recognition. Deterministic for a given ``random.Random``.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from typing import Final

from cxguard.simulate.audiohook import AudioHookClient, client_message
from cxguard.simulate.stream import StreamClient
from cxguard.simulate.twilio import FRAME_BYTES, TwilioClient

SILENCE: Final = b"\xff" * FRAME_BYTES
"""20 ms of μ-law silence."""
HUGE_BYTES: Final = 80 * 1024
"""Over the server's default 64 KiB message limit."""

TWILIO_FATAL: Final = (
    "malformed_json",
    "wrong_type",
    "huge_frame",
    "big_payload",
    "bad_base64",
    "surrogate",
    "duplicate_seq",
    "seq_backwards",
    "chunk_repeat",
    "timestamp_back",
    "binary_frame",
    "unknown_event",
    "second_start",
    "stream_sid_mismatch",
    "not_an_object",
)
AUDIOHOOK_FATAL: Final = (
    "malformed_json",
    "wrong_type",
    "huge_frame",
    "surrogate_error",
    "surrogate_update",
    "surrogate_key",
    "seq_skip",
    "seq_repeat",
    "serverseq_ahead",
    "odd_stereo",
    "unknown_type",
    "bad_duration",
    "session_id_mismatch",
    "audio_while_paused",
)
STREAM_FATAL: Final = (
    "malformed_json",
    "audio_before_start",
    "second_start",
    "odd_frame",
    "huge_frame",
    "surrogate",
    "unknown_event",
    "bad_format",
    "wrong_type",
)
_BAD_MARKS: Final = (
    "cxguard.intent",
    "cxguard.intent=",
    "cxguard.",
    "cxguard.=x",
    "cxguard.Intent=billing",
    "cxguard.intent=" + "x" * 300,
    "cxguard.handoff=\u202e\u0000",
    "cxguard.authenticated=maybe",
)


@dataclass
class Connection:
    """One hostile connection: the frames to send, in order, and what it tries."""

    protocol: str
    frames: list[str | bytes] = field(default_factory=list)
    fatal: str | None = None
    """The kind of the closing violation; None if the stream only abuses survivably."""
    session_id: str = ""
    organization_id: str = ""
    """AudioHook: what a signed upgrade must name."""


def twilio_connection(rng: random.Random, media_frames: int = 40) -> Connection:
    client = TwilioClient(custom_parameters={"tenant": "fuzz", "From": "+15555550100"})
    client.start()
    frames = client.data_to_send()
    for _ in range(media_frames):
        roll = rng.random()
        if roll < 0.15:
            client.send_mark(rng.choice(_BAD_MARKS))
        elif roll < 0.2:
            client.send_dtmf(rng.choice("0123456789*#"))
        else:
            client.send_audio(SILENCE, SILENCE)
        frames += client.data_to_send()
    conn = Connection("twilio", frames)
    if rng.random() < 0.9:
        conn.fatal = rng.choice(TWILIO_FATAL)
        conn.frames += _twilio_fatal(conn.fatal, client, rng)
    else:
        client.finish()
        conn.frames += client.data_to_send()
    return conn


def _twilio_fatal(kind: str, client: TwilioClient, rng: random.Random) -> list[str | bytes]:
    client.send_audio(SILENCE, SILENCE)
    media = json.loads(str(client.data_to_send()[0]))
    sid = client.stream_sid
    if kind == "malformed_json":
        text = json.dumps(media)
        return [text[: rng.randrange(1, len(text))]]
    if kind == "wrong_type":
        media["media"][rng.choice(["chunk", "timestamp", "payload", "track"])] = rng.choice(
            [None, 7, [], {}, True, 1.5]
        )
        return [json.dumps(media)]
    if kind == "huge_frame":
        return [json.dumps({"event": "mark", "streamSid": sid, "pad": "x" * HUGE_BYTES})]
    if kind == "big_payload":
        media["media"]["payload"] = base64.b64encode(b"\xff" * 20_000).decode()
        return [json.dumps(media)]
    if kind == "bad_base64":
        media["media"]["payload"] = rng.choice(["!!!!", "AQI", "A Q==", "\u00e9\u00e9=="])
        return [json.dumps(media)]
    if kind == "surrogate":
        client.send_mark("x")
        mark = json.loads(str(client.data_to_send()[0]))
        mark["mark"]["name"] = "note \ud800"
        return [json.dumps(mark)]  # ensure_ascii: travels as the escape "\ud800"
    if kind == "duplicate_seq":
        return [json.dumps(media), json.dumps(media)]
    if kind == "seq_backwards":
        media["sequenceNumber"] = "1"
        return [json.dumps(media)]
    if kind == "chunk_repeat":
        again = dict(media, sequenceNumber=str(int(media["sequenceNumber"]) + 1))
        return [json.dumps(media), json.dumps(again)]
    if kind == "timestamp_back":
        media["media"]["timestamp"] = "0"
        media["media"]["chunk"] = str(int(media["media"]["chunk"]) + 5)
        return [json.dumps(media)]
    if kind == "binary_frame":
        return [rng.randbytes(rng.randrange(1, 400))]
    if kind == "unknown_event":
        return [json.dumps({"event": rng.choice(["clear", "Media", "", "hangup"]), "x": 1})]
    if kind == "second_start":
        return [json.dumps({"event": "start", "sequenceNumber": "999999", "streamSid": sid})]
    if kind == "stream_sid_mismatch":
        media["streamSid"] = "MZ" + "f" * 32
        return [json.dumps(media)]
    return [rng.choice(["[1,2]", '"media"', "null", "42", "[" * 5000])]


def audiohook_connection(rng: random.Random, media_frames: int = 30) -> Connection:
    client = AudioHookClient(
        participant={
            "id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0",
            "ani": "+15555550100",
            "aniName": "Pat Doe",
            "dnis": "+15555550199",
        },
        custom_config={"queue": "fuzz"},
    )
    client.open()
    frames = client.data_to_send()
    open_parameters = json.loads(str(frames[0]))["parameters"]
    client.assume_opened()  # the server answers ``opened`` (seq 1); a fuzzer does not wait
    for _ in range(media_frames):
        roll = rng.random()
        if roll < 0.05:
            client.error(rng.choice([400, 429, 500]), "upstream said: " + "\u202e" * 3)
        elif roll < 0.1:
            client.ping(rtt_ms=rng.choice([None, 12.5]))
        elif roll < 0.13:
            client.send("open", open_parameters)  # a second open is ignored
        else:
            client.send_audio(SILENCE * 5, SILENCE * 5)
        frames += client.data_to_send()
    conn = Connection("audiohook", frames, None, client.session_id, client.organization_id)
    if rng.random() < 0.9:
        conn.fatal = rng.choice(AUDIOHOOK_FATAL)
        conn.frames += _audiohook_fatal(conn.fatal, client, rng)
    else:
        client.close("end")
        conn.frames += client.data_to_send()
    return conn


def _audiohook_fatal(kind: str, client: AudioHookClient, rng: random.Random) -> list[str | bytes]:
    if kind == "odd_stereo":
        return [b"\xff" * 801]
    if kind == "huge_frame":
        return [b"\xff" * HUGE_BYTES] if rng.random() < 0.5 else ["{" + " " * HUGE_BYTES + "}"]
    if kind == "audio_while_paused":
        client.pause()
        client.send_frame(SILENCE * 2, 20.0)
        return client.data_to_send()
    if kind == "surrogate_error":
        client.error(500, "bad \ud800 text")
    elif kind == "surrogate_update":
        client.update("en-\udfff")
    elif kind == "surrogate_key":
        client.send("ping", {"\ud800": "key"})
    elif kind == "seq_skip":
        client.send("ping", {}, seq=client.seq + 5)
    elif kind == "seq_repeat":
        client.send("ping", {}, seq=client.seq)
    elif kind == "serverseq_ahead":
        client.send("ping", {}, serverseq=client.serverseq + 50)
    elif kind == "unknown_type":
        client.send(rng.choice(["opened", "dance", "Ping"]), {})
    elif kind == "bad_duration":
        client.send("discarded", {"start": "PT1S", "discarded": rng.choice(["1s", "PT-1S", ""])})
    elif kind == "session_id_mismatch":
        client.send("ping", {}, session_id="6bd28c51-2d62-4fc6-8f5d-0d1bd01ab4a1")
    elif kind == "wrong_type":
        text = client_message("ping", client.session_id, client.seq + 1, 1, 0.0, {})
        message = json.loads(text)
        message[rng.choice(["seq", "serverseq", "position", "parameters", "version"])] = rng.choice(
            [None, "7", [], -1, True]
        )
        return [json.dumps(message)]
    else:  # malformed_json
        client.ping()
        text = str(client.data_to_send()[0])
        return [text[: rng.randrange(1, len(text))]]
    return client.data_to_send()


def stream_connection(rng: random.Random, media_frames: int = 40) -> Connection:
    """A ``/stream`` connection (L16 16 kHz stereo, cxguard's start message)."""
    client = StreamClient(parameters={"queue": "fuzz", "From": "+15555550100"})
    fatal = rng.choice(STREAM_FATAL) if rng.random() < 0.9 else None
    if fatal == "audio_before_start":
        return Connection("stream", [b"\x00" * 640], fatal)
    if fatal == "bad_format":
        first = client.start_message() | {"sample_rate": rng.choice([11025, 0, 48000])}
        return Connection("stream", [json.dumps(first)], fatal)
    client.start()
    frames = client.data_to_send()
    silence = b"\x00" * 640  # 20 ms of 16 kHz L16 per speaker
    for _ in range(media_frames):
        if rng.random() < 0.1:
            client.send_control(rng.choice(["intent", "Intent", "handoff", "x" * 50]))
        else:
            client.send_audio(silence, silence)
        frames += client.data_to_send()
    conn = Connection("stream", frames, fatal)
    if fatal is None:
        client.finish()
        conn.frames += client.data_to_send()
    elif fatal == "malformed_json":
        conn.frames.append('{"event": "control", "name": ')
    elif fatal == "second_start":
        conn.frames.append(json.dumps(client.start_message()))
    elif fatal == "odd_frame":
        conn.frames.append(b"\x00" * rng.choice([1, 2, 3, 641]))
    elif fatal == "huge_frame":
        conn.frames.append(b"\x00" * HUGE_BYTES)
    elif fatal == "surrogate":
        conn.frames.append(json.dumps({"event": "control", "name": "intent", "value": "\udfff"}))
    elif fatal == "unknown_event":
        conn.frames.append(json.dumps({"event": rng.choice(["hangup", "media", ""])}))
    else:  # wrong_type
        conn.frames.append(json.dumps({"event": "dtmf", "digit": rng.choice([5, None, []])}))
    return conn
