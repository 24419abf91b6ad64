"""AudioHook media negotiation end to end: an L16 session of the bundled call is judged like
the PCMU one (same speaker turns), and ``supportedLanguages`` comes from the config file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support_services import ByCall, ledger_settings, serving

from cxguard.runtime.auth import Admission
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import Sidecar
from cxguard.runtime.settings import AudioHookSettings, load_settings
from cxguard.runtime.simulate import load_tracks_for, play
from cxguard.runtime.streams import open_stream
from cxguard.simulate.audiohook import AudioHookClient


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str, ByCall]]:
    recorder = ByCall()
    async with serving(ledger_settings(tmp_path), recorder) as (side, host):
        yield side, f"ws://{host}/audiohook", recorder


async def test_an_l16_session_gives_the_pcmu_sessions_turns(
    sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    side, url, recorder = sidecar
    agent, customer = demo_audio()
    sessions = {}
    for encoding in ("PCMU", "L16"):
        client = AudioHookClient(encoding=encoding)
        agent_audio, customer_audio = load_tracks_for(client, agent, customer)
        played = await play(url, client, customer_audio, agent_audio, fast=True)
        assert played.problems == () and played.close_code == 1000
        opened = client.messages_received[0]["parameters"]["media"]
        assert [m["format"] for m in opened] == [encoding]
        sessions[encoding] = client.conversation_id
    await side.drain()
    pcmu, l16 = (recorder.turns[sessions[e]] for e in ("PCMU", "L16"))
    assert len(pcmu) >= 18
    assert [t.speaker for t in l16] == [t.speaker for t in pcmu]
    assert all(
        abs(a.start_ms - b.start_ms) <= 60 and abs(a.end_ms - b.end_ms) <= 60
        for a, b in zip(l16, pcmu, strict=True)
    )
    judged = {v.turn_index for v in recorder.verdicts[sessions["L16"]]}
    assert {t.index for t in l16 if t.speaker == "agent"} <= judged


def test_supported_languages_come_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("audiohook:\n  supported_languages: [en-US, es-US]\n", encoding="utf-8")
    settings = load_settings(config)
    stream = open_stream("audiohook", settings, Admission())
    client = AudioHookClient(supported_languages=True)
    client.open()
    for frame in client.data_to_send():
        assert isinstance(frame, str)
        stream.receive_text(frame)
    (opened,) = (json.loads(m) for m in stream.data_to_send())
    assert opened["parameters"]["supportedLanguages"] == ["en-US", "es-US"]


async def test_send_events_returns_transcripts_and_violations(tmp_path: Path) -> None:
    settings = ledger_settings(tmp_path, audiohook=AudioHookSettings(send_events=True))
    recorder = ByCall()
    agent, customer = demo_audio()
    client = AudioHookClient()
    agent_audio, customer_audio = load_tracks_for(client, agent, customer)
    last_ms = len(agent_audio) // 8  # the end: the cue runs before the close

    async def judged_so_far() -> None:  # before the close: the session is still open
        async with asyncio.timeout(60):
            while len(recorder.turns.get(client.conversation_id, [])) < 17:
                await asyncio.sleep(0.1)

    async with serving(settings, recorder) as (side, host):
        played = await play(
            f"ws://{host}/audiohook", client, customer_audio, agent_audio, fast=True,
            cues=[(last_ms, judged_so_far)],
        )  # fmt: skip
        await side.drain()
    assert played.problems == () and played.close_code == 1000
    entities = [
        e
        for m in client.messages_received
        if m["type"] == "event"
        for e in m["parameters"]["entities"]
    ]
    transcripts = [e["data"] for e in entities if e["type"] == "transcript"]
    turns = recorder.turns[client.conversation_id]
    assert len(transcripts) >= 17
    for data, turn in zip(transcripts, turns, strict=False):
        assert data["isFinal"] is True
        assert data["channelId"] == (0 if turn.speaker == "customer" else 1)  # external first
        assert data["alternatives"][0]["interpretations"][0]["transcript"] == turn.text
        assert data["offset"] == f"PT{turn.start_ms / 1000:g}S"
    card = next(t for t in transcripts if "card number" in str(t))
    assert "[CARD]" in str(card) and "4532" not in str(card)
    failed = {
        (e["data"]["turnIndex"], e["data"]["assertionId"])
        for e in entities
        if e["type"] == "cxguard.verdict"
    }
    assert (0, "disclosure.ai_identifies") in failed
    assert (4, "billing.no_payment_arrangements_unauthenticated") in failed
