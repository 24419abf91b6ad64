"""End to end: card numbers, SSNs and CVVs read over a real websocket call are stored and
published in clear nowhere: no ledger table, no Redis key, stream entry or pub/sub message, no
webhook body, no log line.

Two calls, both through the real sidecar, VAD, policy pack, ONNX classifiers, SQLite ledger,
Redis (a tenant of their own) and a local webhook receiver, with the redacting log handler:

* spoken by espeak-ng and transcribed by the real Whisper model: the caller reads a card in
  groups across pauses (the agent says "mm-hm" between), an SSN and a CVV; the agent reads
  the card and the CVV back and must fail the PII assertion;
* the forms Whisper cannot be made to write on demand ("nought", "niner", a letter O,
  fullwidth digits, a number split by a sentence end, a card quoted by a regex's evidence and
  by a handoff reason) come from a scripted transcriber at the ASR boundary: each segment of
  the (espeak) audio is matched to its script line by its loudness envelope.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
import subprocess
import uuid
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from support_http import RecordingServer, Reply

from cxguard.audio.files import read_audio
from cxguard.errors import AsrError
from cxguard.model import CallInfo, Transcript, TurnText, Verdict
from cxguard.pii.text import parse
from cxguard.runtime.logs import configure_logging
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import HandoffSettings, Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

REDIS_URL = "redis://127.0.0.1:6379/0"
RATE = 16_000


@dataclass(frozen=True)
class Line:
    speaker: str
    said: str
    """What espeak-ng speaks."""
    gap_s: float = 1.5
    """Silence before it (after the previous line ends)."""
    written: str = ""
    """What the scripted transcriber returns for it ("" = the real model's transcript)."""


def _speak(text: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "145", "-w", str(path), text], check=True)
    return read_audio(path, RATE)


def _tracks(lines: Sequence[Line], tmp: Path) -> tuple[Path, Path, list[np.ndarray]]:
    audio = [_speak(line.said, tmp / f"line{k}.wav") for k, line in enumerate(lines)]
    starts, at = [], 0
    for line, a in zip(lines, audio, strict=True):
        at += int(line.gap_s * RATE)
        starts.append(at)
        at += len(a)
    tracks = {"agent": np.zeros(at + RATE, np.int16), "customer": np.zeros(at + RATE, np.int16)}
    for line, a, start in zip(lines, audio, starts, strict=True):
        tracks[line.speaker][start : start + len(a)] = a
    paths = []
    for speaker, pcm in tracks.items():
        path = tmp / f"{speaker}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(pcm.tobytes())
        paths.append(path)
    return paths[0], paths[1], audio


class ScriptedTranscriber:
    """The ASR boundary for forms no speech model writes on demand. Line ``k`` is spoken as
    ``k + 2`` words, so every line lasts a different time; a segment is the line whose
    duration it is closest to (the VAD cuts within ~50 ms here, lines differ by ~300 ms), and
    that line's written text is returned."""

    def __init__(self, lines: Sequence[Line], audio: Sequence[np.ndarray]) -> None:
        self._lines = lines
        self._seconds = np.array([len(a) / RATE for a in audio])
        self.matched: list[int] = []

    def __call__(
        self, items: Sequence[np.ndarray], *, on_done: object = None
    ) -> list[Transcript | AsrError]:
        found = [int(np.argmin(abs(self._seconds - len(x) / RATE))) for x in items]
        self.matched += found
        return [Transcript(self._lines[k].written, "scripted") for k in found]


@dataclass
class Captured:
    tenant: str
    db: Path
    log: io.StringIO
    redis_texts: list[str]
    webhook: RecordingServer
    turns: list[TurnText]
    verdicts: list[Verdict]
    matched: list[int]


@pytest.fixture
def log_capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    # No clock in the lines (its digits would blur the check); cxguard's own debug lines too.
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("cxguard").setLevel(logging.DEBUG)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    logging.getLogger("cxguard").setLevel(logging.NOTSET)


async def _call(lines: Sequence[Line], tmp: Path, log: io.StringIO, scripted: bool) -> Captured:
    tenant = f"pii{uuid.uuid4().hex[:10]}"
    agent, customer, audio = _tracks(lines, tmp)
    webhook = RecordingServer([Reply()])
    settings = Settings(
        port=0,
        evidence_url=f"sqlite:///{tmp / 'ev.db'}",
        redis_url=REDIS_URL,
        default_tenant=tenant,
        handoff=HandoffSettings(webhook_url=webhook.url, timeout_s=5.0),
    )
    batch = ScriptedTranscriber(lines, audio) if scripted else None
    services = await Services.start(settings, transcribe_batch=batch, model_id="scripted")
    turns: list[TurnText] = []
    verdicts: list[Verdict] = []

    def listen(info: CallInfo, text: TurnText | None, found: list[Verdict]) -> None:
        turns.extend([text] if text else [])
        verdicts.extend(found)

    services.listeners.append(listen)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    pubsub = client.pubsub()
    channels = [f"cxguard:{tenant}:alerts", f"cxguard:{tenant}:handoffs"]
    await pubsub.subscribe(*channels)
    published: list[str] = []
    try:
        try:
            async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
                port = next(iter(server.sockets)).getsockname()[1]
                options = SimulationOptions(fast=True, parameters={"tenant": tenant})
                url = f"ws://127.0.0.1:{port}/twilio"
                result = await simulate_call(url, agent, customer, options)
                assert result.close_code == 1000
                await side.drain()
        finally:
            await services.close()
        idle = 0
        while idle < 3:  # subscribe confirmations read as None too: stop after three quiet reads
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)
            idle = 0 if message else idle + 1
            if message:
                published.append(str(message["data"]))
        stored: list[str] = list(published)
        async for key in client.scan_iter(f"cxguard:{tenant}:*"):
            kind = await client.type(key)
            if kind == "stream":
                for _, fields in await client.xrange(key):
                    stored += [str(v) for v in fields.values()]
            elif kind == "string":
                stored.append(str(await client.get(key)))
            else:
                stored.append(f"unexpected {kind} {key}")
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await pubsub.aclose()
        await client.aclose()
        webhook.close()
    assert published, "nothing was published: the call raised no alert"
    matched = batch.matched if batch is not None else []
    return Captured(tenant, tmp / "ev.db", log, stored, webhook, turns, verdicts, matched)


def _leaves(value: Any) -> Iterator[str]:
    """Every string inside ``value``, JSON text unpacked."""
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError:
            yield value
            return
        if isinstance(inner, dict | list):
            yield from _leaves(inner)
        elif isinstance(inner, str):
            yield inner
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)


def _ledger_texts(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [row for t in tables for row in conn.execute(f'SELECT * FROM "{t}"')]
    return [leaf for row in rows for cell in row for leaf in _leaves(cell)]


def _readable_digits(texts: Sequence[str]) -> str:
    """All digits left readable, as the detector reads them, with texts put end to end."""
    return "".join(run.digits for run in parse(" ".join(texts)).runs)


NAMES_CVV = re.compile(r"\b(?:cvv|security code)\b", re.IGNORECASE)


def _assert_nowhere(call: Captured, secrets: dict[str, str]) -> None:
    stores = {
        "ledger": _ledger_texts(call.db),
        "redis": [leaf for s in call.redis_texts for leaf in _leaves(s)],
        "webhook": [leaf for r in call.webhook.received for leaf in _leaves(r.body.decode())],
        "log": call.log.getvalue().splitlines(),
    }
    assert stores["ledger"] and stores["log"]
    # Every file the evidence path wrote: the ledger (and its WAL) and the local state next
    # to it (write-ahead spool, alert outbox, spooled segment audio).
    files = [p for p in call.db.parent.rglob("*") if p.is_file() and p.name.startswith("ev.db")]
    files += [p for p in call.db.parent.glob(call.db.name + ".state/**/*") if p.is_file()]
    assert any(".state" in str(p) for p in files), "the local evidence state was not searched"
    blob = b"".join(p.read_bytes() for p in files)
    for name, number in secrets.items():
        if len(number) >= 7:  # (three digits occur by chance in any binary file)
            assert number.encode() not in blob, name
        for store, texts in stores.items():
            digits = _readable_digits(texts) if store != "log" else ""
            per_line = [_readable_digits([t]) for t in texts]
            if len(number) >= 7:
                windows = {number[i : i + 7] for i in range(len(number) - 6)}
                assert not any(w in digits for w in windows), (name, store)
                pairs = zip(texts, per_line, strict=True)
                bad = [t for t, d in pairs if any(w in d for w in windows)]
                assert not bad, (name, store, bad[:3])
            else:  # a CVV: no readable run of a text that names it holds it
                said = [t for t in texts if NAMES_CVV.search(t)]
                assert not any(number in _readable_digits([t]) for t in said), (name, store, said)


# --------------------------------------------------------------------------- the calls

CARD = "4556737586899855"
SSN = "219047365"
CVV = "731"

SPOKEN = [
    Line("agent", "Hello, you are speaking with the automated billing assistant.", 0.5),
    Line("customer", "Hi. My card number is 4 5 5 6."),
    Line("agent", "Mm-hm.", 0.8),
    Line("customer", "7 3 7 5.", 0.8),
    Line("customer", "8 6 8 9, 9 8 5 5."),
    Line("agent", "Thank you. Let me read it back: 4 5 5 6, 7 3 7 5, 8 6 8 9, 9 8 5 5."),
    Line("customer", "My social is 2 1 9, 0 4, 7 3 6 5."),
    Line("agent", "And the security code on the back of the card?"),
    Line("customer", "7 3 1."),
    Line("agent", "The security code is 7 3 1, thank you."),
]


async def test_spoken_numbers_through_whisper_are_stored_in_clear_nowhere(
    tmp_path: Path, log_capture: io.StringIO
) -> None:
    call = await _call(SPOKEN, tmp_path, log_capture, scripted=False)
    agent_fails = {
        v.turn_index for v in call.verdicts
        if v.assertion_id == "pii.no_full_card_number" and v.outcome == "fail"
    }  # fmt: skip
    readback = [t for t in call.turns if t.speaker == "agent" and "read it back" in t.text]
    assert readback and readback[0].index in agent_fails, [(t.index, t.text) for t in call.turns]
    _assert_nowhere(call, {"card": CARD, "ssn": SSN, "cvv": CVV})


NATO = "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november"
NATO_MORE = "oscar papa quebec romeo sierra tango"
WORDS = (NATO + " " + NATO_MORE).split()
SCRIPT = [
    ("agent", "Hello, you are speaking with the automated billing assistant for Northwind."),
    ("customer", "Hi, my card number is four five five six"),
    ("agent", "mm-hm"),
    ("customer", "seven three seven five. Eight six eight niner."),
    ("customer", "nine eight five five"),
    ("agent", "Thanks. So that is ４５５６ ７３７５ ８６８９ ９８５５, correct?"),
    ("customer", "Yes. And my social is two one nine, oh four, seven three six five."),
    ("agent", "Could you read me the security code on the back?"),
    ("customer", "seven three one"),
    ("agent", "The CVV is 7 3 1."),
    ("customer", "Also please close 4556737586899855 account today."),
    ("agent", "I can postpone the 7375 8689 9855 bill until Friday."),
    ("customer", "And my other card is 4 O 1 2 8 8 8 8 8 8 8 8 1 8 8 1."),
    ("agent", "Your SSN on file is 219-04-7365, nought niner."),
    ("customer", "ok"),
    ("agent", "The card ending 9855 is four five five six dash seven three seven five dash"),
    ("agent", "eight six eight nine dash nine eight five five."),
]


async def test_written_forms_through_the_live_path_are_stored_in_clear_nowhere(
    tmp_path: Path, log_capture: io.StringIO
) -> None:
    lines = [
        Line(speaker, " ".join(WORDS[: k + 2]), 1.3, written)
        for k, (speaker, written) in enumerate(SCRIPT)
    ]
    call = await _call(lines, tmp_path, log_capture, scripted=True)
    assert sorted(call.matched) == list(range(len(SCRIPT)))  # each line, once, as one segment
    seen = [t.text for t in call.turns]
    assert all("4556" not in t and "7375" not in t for t in seen), seen  # listeners too
    failed = {(v.turn_index, v.assertion_id) for v in call.verdicts if v.outcome == "fail"}

    def fails(marker: str, after: bool = False) -> bool:
        turn = next(t for t in call.turns if marker in t.text)
        later = [t.index for t in call.turns if t.speaker == "agent" and t.index >= turn.index]
        wanted = later if after else [turn.index]
        return any((i, "pii.no_full_card_number") in failed for i in wanted)

    assert fails("So that is")  # fullwidth read-back of a card completed across segments
    assert fails("The CVV is")
    assert fails("SSN on file")
    assert fails("The card ending", after=True)  # read across two agent segments
    assert any(a == "billing.closure_escalation" for _, a in failed)
    assert call.webhook.received  # the handoff went out (its reason quoted the card)
    _assert_nowhere(call, {"card": CARD, "ssn": SSN, "cvv": CVV, "card2": "4012888888881881"})
