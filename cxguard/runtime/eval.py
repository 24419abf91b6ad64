"""``cxguard eval``: a release's test calls judged offline, as a gate.

Inputs are checked before anything is judged (a bad line of the tenth file still exits 2
before the first file's rows are printed): transcripts are read and evaluated, recordings
decoded, then recordings transcribed (:mod:`~cxguard.runtime.offline_call`) and evaluated.
The release named is the pack's hash, the classifiers' ids, the ASR model's id (when a
recording was transcribed) and the agent version given (``--agent-version``, else the
``agent_version`` call parameter).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxguard.errors import ConfigError
from cxguard.model import AGENT_VERSION, Release
from cxguard.policy.gate import GateCase, GateReport, recording_cases, transcript_cases
from cxguard.policy.offline import evaluate_transcript, judge_steps, load_transcript
from cxguard.runtime.offline_call import (
    CallAudio,
    heard_steps,
    segment_transcriber,
    stereo_call,
    two_tracks,
)
from cxguard.runtime.services import load_engine, load_transcriber
from cxguard.runtime.settings import load_settings

TRANSCRIPT_SUFFIX = ".jsonl"
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".au"})


@dataclass(frozen=True)
class EvalRequest:
    paths: tuple[Path, ...] = ()
    pairs: tuple[tuple[Path, Path], ...] = ()
    """``(agent, customer)`` mono recordings of one call each."""
    policy: Path | None = None
    classifiers: bool = True
    config: Path | None = None
    agent_channel: int = 1
    parameters: Mapping[str, str] = field(default_factory=dict)
    agent_version: str | None = None


def collect(paths: tuple[Path, ...]) -> tuple[list[Path], list[Path]]:
    """``(transcripts, stereo recordings)``; a folder gives its ``.jsonl`` files, sorted."""
    transcripts: list[Path] = []
    recordings: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob(f"*{TRANSCRIPT_SUFFIX}") if p.is_file())
            if not found:
                raise ConfigError(f"{path}: no {TRANSCRIPT_SUFFIX} transcripts in this folder")
            transcripts += found
        elif not path.is_file():
            raise ConfigError(f"{path}: no such file or folder")
        elif path.suffix.lower() == TRANSCRIPT_SUFFIX:
            transcripts.append(path)
        elif path.suffix.lower() in AUDIO_SUFFIXES:
            recordings.append(path)
        else:
            raise ConfigError(
                f"{path}: not a transcript ({TRANSCRIPT_SUFFIX}) nor a recording "
                f"({', '.join(sorted(AUDIO_SUFFIXES))})"
            )
    return transcripts, recordings


def run_gate(request: EvalRequest, emit: Callable[[dict[str, Any]], object]) -> GateReport:
    """Judge every input; ``emit`` gets each verdict row (with ``source`` and ``release``)."""
    settings = load_settings(
        request.config,
        policy=str(request.policy) if request.policy else None,
        classifiers=request.classifiers,
    )
    transcripts, recordings = collect(request.paths)
    for agent, customer in request.pairs:
        for track in (agent, customer):
            if not track.is_file():
                raise ConfigError(f"{track}: no such file")
    engine, pack = load_engine(settings)
    params = dict(request.parameters)
    options = settings.turns.options()
    judged: list[tuple[str, list[dict[str, Any]], list[GateCase]]] = []
    for path in transcripts:
        lines = load_transcript(path)
        rows = list(evaluate_transcript(lines, engine, params, options, source=str(path)))
        judged.append((str(path), rows, transcript_cases(str(path), lines, rows)))
    calls: list[CallAudio] = [stereo_call(p, request.agent_channel) for p in recordings]
    calls += [two_tracks(a, c) for a, c in request.pairs]
    model_ids = dict(engine.model_ids)
    if calls:
        transcriber = load_transcriber(settings)
        model_ids["asr"] = transcriber.model_id
        transcribe = segment_transcriber(transcriber.transcribe_batch)
        for call in calls:
            steps, end_ms = heard_steps(call, settings, transcribe)
            rows = list(judge_steps(steps, engine, params, options, end_ms=end_ms))
            judged.append((call.name, rows, recording_cases(call.name, rows)))
    version = request.agent_version or params.get(AGENT_VERSION, "")
    release = Release(pack.hash, model_ids, version)
    report = GateReport(release, f"{pack.id} {pack.version}")
    for source, rows, cases in judged:
        report.sources.append(source)
        report.cases += cases
        for row in rows:
            emit({"source": source, "release": release.id, **row})
    return report
