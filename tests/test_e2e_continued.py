"""A conversation carried by two AudioHook sessions (Genesys reconnects with
``continuedSessions``) is one evidence call: turn numbers go on, the timeline goes on, no
(turn, assertion) is judged twice, the first-turn AI disclosure is not asked again — and the
two halves give the turns and verdicts one session gives."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support_services import ByCall, ledger_settings, serving

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import Sidecar
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import load_tracks, play
from cxguard.simulate.audiohook import AudioHookClient

CUT_MS = 41_600
"""Between an agent turn (38.4-41.3 s) and the customer's answer (42.0 s)."""


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str, ByCall]]:
    recorder = ByCall()
    async with serving(ledger_settings(tmp_path), recorder) as (side, host):
        yield side, f"ws://{host}/audiohook", recorder


async def test_a_continued_session_continues_the_call(
    sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    side, url, recorder = sidecar
    agent, customer = demo_audio()
    agent_ulaw, customer_ulaw = load_tracks(agent, customer)
    cut = CUT_MS * 8
    whole = AudioHookClient()
    await play(url, whole, customer_ulaw, agent_ulaw, fast=True)
    first = AudioHookClient()
    await play(url, first, customer_ulaw[:cut], agent_ulaw[:cut], fast=True)
    await side.drain()  # the first session is judged before the second connects
    second = AudioHookClient(
        conversation_id=first.conversation_id, continued_sessions=[first.continuation()]
    )
    played = await play(url, second, customer_ulaw[cut:], agent_ulaw[cut:], fast=True)
    await side.drain()
    assert await side.services.evidence.wait_stored(10)  # the ledger has it all
    assert played.problems == () and played.close_code == 1000

    call = first.conversation_id
    reference, split = recorder.turns[whole.conversation_id], recorder.turns[call]
    # One timeline: the second session's turns come after the first's, as in one session
    # (boundaries within a few VAD frames: the second session's VAD starts afresh).
    assert [(t.index, t.speaker) for t in split] == [(t.index, t.speaker) for t in reference]
    assert all(
        abs(a.start_ms - b.start_ms) <= 120 and abs(a.end_ms - b.end_ms) <= 120
        for a, b in zip(split, reference, strict=True)
    )
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        rows = list(ledger.export(call_id=call))
        turns = ledger.turns(call_id=call)
        calls = [c for c in ledger.calls() if c["call_id"] == call]
        started = ledger.events(call_id=call, kind="call_started")
        report = ledger.verify(call_id=call)
    finally:
        ledger.close()
    assert len(calls) == 1 and len(started) == 2  # one call, two sessions
    assert started[1]["data"]["continued_sessions"] == first.session_id
    assert sorted(t["turn"] for t in turns) == list(range(len(reference)))
    twice = [k for k, n in Counter((r["turn"], r["assertion"]) for r in rows).items() if n > 1]
    assert twice == []
    disclosure = [r for r in rows if r["assertion"] == "disclosure.ai_identifies"]
    judged = [(r["turn"], r["verdict"]) for r in disclosure if r["verdict"] != "not_applicable"]
    assert judged == [(0, "fail")]  # the second session's first agent turn is not asked again
    assert report.ok, report.as_dict()
    outcomes = {(v.turn_index, v.assertion_id): v.outcome for v in recorder.verdicts[call]}
    expected = {
        (v.turn_index, v.assertion_id): v.outcome for v in recorder.verdicts[whole.conversation_id]
    }
    assert outcomes == expected


async def test_a_session_continued_on_another_sidecar_continues_the_call(
    tmp_path: Path,
) -> None:
    """After a drain, Genesys reconnects wherever its load balancer sends it: a second sidecar
    sharing the ledger picks the call up from there."""
    from cxguard.runtime.settings import LedgerSettings

    agent, customer = demo_audio()
    agent_ulaw, customer_ulaw = load_tracks(agent, customer)
    cut = CUT_MS * 8
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = AudioHookClient()
    recorders = []
    for name, client, part in (
        ("a", first, slice(0, cut)),
        ("b", AudioHookClient(conversation_id=first.conversation_id,
                              continued_sessions=[first.continuation()]), slice(cut, None)),
    ):  # fmt: skip
        state = LedgerSettings(state_dir=str(tmp_path / f"state-{name}"))
        settings = Settings(port=0, evidence_url=url, ledger=state)
        recorder = ByCall()
        recorders.append(recorder)
        async with serving(settings, recorder) as (side, host):
            ws = f"ws://{host}/audiohook"
            played = await play(ws, client, customer_ulaw[part], agent_ulaw[part], fast=True)
            assert played.problems == () and played.close_code == 1000
            await side.drain()
            assert await side.services.evidence.wait_stored(10)
    call = first.conversation_id
    before, after = (r.turns[call] for r in recorders)
    assert [t.index for t in before + after] == list(range(len(before) + len(after)))
    assert after[0].start_ms > before[-1].end_ms  # one clock
    ledger = EvidenceLedger(url)
    try:
        rows = list(ledger.export(call_id=call))
        report = ledger.verify(call_id=call)
    finally:
        ledger.close()
    twice = [k for k, n in Counter((r["turn"], r["assertion"]) for r in rows).items() if n > 1]
    assert twice == []
    disclosure = [r for r in rows if r["assertion"] == "disclosure.ai_identifies"]
    judged = [(r["turn"], r["verdict"]) for r in disclosure if r["verdict"] != "not_applicable"]
    assert judged == [(0, "fail")]
    assert report.ok, report.as_dict()
