"""Render dialogues as two-track 8 kHz μ-law calls: agent.wav + customer.wav on one timeline.

    PYTHONPATH=. python -m scripts.replay.render harper-valley scripts/replay/harper_valley/*.json \
        --out DIR
    PYTHONPATH=. python -m scripts.replay.render sgd --limit 20 --out DIR
    PYTHONPATH=. python -m scripts.replay.render abcd --out DIR

Each call becomes ``DIR/<source>-<id>/`` with ``agent.wav`` and ``customer.wav`` (mono G.711
μ-law WAV of equal length, the silent side digital silence, as a Twilio ``both_tracks`` stream
carries them) and ``call.json``: every spoken piece with its speaker, text, start/end on the
call timeline, voice, and whether it is a line of the dialogue or a backchannel.

**Timed sources** (Harper Valley transcripts: ``speaker_role`` agent/caller, ``start_ms``,
``duration_ms``, ``human_transcript``) keep their real timing: each line starts at its
``start_ms``; a line whose speech would overrun its ``duration_ms`` by more than a quarter is
spoken faster (up to 1.6×), and a line that would still run into the same speaker's next one
is moved after it (``shifted_ms`` in the manifest). Tags such as ``[noise]`` are not spoken.

**Untimed sources** (SGD Banks_1 dialogues, ABCD chats) get natural synthetic timing from a
seeded RNG: a gap of 0.3–1.2 s before each turn, a 0.5–0.9 s pause between some sentences of a
turn (the pauses that split a speaker turn into several VAD segments), and now and then a
backchannel ("mm-hm", "okay") from the listener under a long turn.

The two speakers get different voices of different engines (espeak-ng and flite), with the
speaking rate varied per call; amounts are read as words ("$1,630" → "one thousand six hundred
and thirty dollars") so the call tests the ASR, not the TTS reading a currency sign.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from num2words import num2words

from cxguard.audio.files import write_wav_ulaw
from scripts.replay.tts import ESPEAK_VOICES, FLITE_VOICES, RATE, Voice, speak

ROOT = Path(__file__).resolve().parents[2]
SGD = ROOT / "data" / "public" / "sgd" / "sgd_banks1_turns.jsonl"
ABCD = ROOT / "data" / "public" / "abcd" / "abcd_sample.json"
Speaker = Literal["agent", "customer"]
BACKCHANNELS = ("mm-hm", "okay", "right", "uh-huh", "yeah", "sure")
Synth = Callable[[str, Voice], npt.NDArray[np.int16]]
"""Text + voice → 8 kHz int16 speech: :func:`scripts.replay.tts.speak` unless a test says."""


@dataclass(frozen=True)
class Line:
    speaker: Speaker
    text: str
    start_ms: float | None = None
    duration_ms: float | None = None


@dataclass(frozen=True)
class Timing:
    gap_s: tuple[float, float] = (0.3, 1.2)
    pause_s: tuple[float, float] = (0.5, 0.9)
    pause_prob: float = 0.35
    """Chance that a sentence boundary inside a turn carries a long pause."""
    backchannel_prob: float = 0.25
    """Chance of a listener backchannel under a turn longer than 2.5 s."""
    lead_s: float = 0.5


@dataclass
class Piece:
    speaker: Speaker
    text: str
    start_ms: float
    end_ms: float
    voice: str
    kind: Literal["line", "backchannel"] = "line"
    line: int = -1
    shifted_ms: float = 0.0
    script: str = ""
    """The dialogue's own words for this piece (``text`` is what the TTS was given)."""


@dataclass
class Call:
    source: str
    call_id: str
    voices: dict[str, str]
    pieces: list[Piece] = field(default_factory=list)


# ------------------------------------------------------------------------------ sources

_TAG = re.compile(r"\[[^\]]*\]|<[^>]*>")


def speakable(text: str) -> str:
    """Text as a TTS engine should read it: no transcription tags, amounts in words."""
    text = _TAG.sub(" ", text)

    def amount(m: re.Match[str]) -> str:
        # Read as an agent reads it, in one breath: num2words' commas would make the TTS
        # pause inside the number ("five thousand, one hundred ...").
        value = m.group(1).replace(",", "")
        unit = m.group(2) or "dollars"
        if "." not in value:
            spoken = f"{num2words(int(value))} {unit}"
        else:
            spoken = str(num2words(float(value), to="currency", currency="USD", separator=" and"))
        return spoken.replace(",", "")

    text = re.sub(r"\$(\d[\d,]*(?:\.\d\d)?)(?: (bucks|dollars))?", amount, text)
    text = re.sub(r"(\d[\d,]*) (dollars|bucks)", _plain, text)
    return " ".join(text.split())


def _plain(m: re.Match[str]) -> str:
    return f"{num2words(int(m.group(1).replace(',', '')))} {m.group(2)}".replace(",", "")


def harper_valley(path: Path) -> list[Line]:
    rows = json.loads(path.read_text())
    if path.stem[:1] in "01234567":
        raise ValueError(f"{path.name}: Harper Valley ids 0-7 are held out for evaluation")
    lines = [
        Line(
            "agent" if r["speaker_role"] == "agent" else "customer",
            r["human_transcript"],
            float(r["start_ms"]),
            float(r["duration_ms"]),
        )
        for r in rows
    ]
    return sorted(lines, key=lambda ln: ln.start_ms or 0.0)


def sgd_dialogues(path: Path = SGD, limit: int = 20, skip: int = 0) -> list[tuple[str, list[Line]]]:
    """The first ``limit`` Banks_1 dialogues after ``skip`` (file order), SYSTEM as agent."""
    dialogues: dict[str, list[Line]] = {}
    for raw in path.read_text().splitlines():
        if not raw.strip():
            continue
        r = json.loads(raw)
        speaker: Speaker = "agent" if r["speaker"] == "SYSTEM" else "customer"
        dialogues.setdefault(r["dialogue_id"], []).append(Line(speaker, r["utterance"]))
    return list(dialogues.items())[skip : skip + limit]


def abcd_chats(path: Path = ABCD) -> list[tuple[str, list[Line]]]:
    """ABCD's sample chats; consecutive messages of one side form one turn, actions dropped."""
    out = []
    for chat in json.loads(path.read_text()):
        lines: list[Line] = []
        for who, text in chat["original"]:
            if who not in ("agent", "customer"):
                continue
            if lines and lines[-1].speaker == who:
                lines[-1] = Line(who, f"{lines[-1].text} {text}")
            else:
                lines.append(Line(who, text))
        out.append((str(chat["convo_id"]), lines))
    return out


# ------------------------------------------------------------------------------ rendering


def call_voices(index: int, rng: random.Random) -> dict[Speaker, Voice]:
    """Two voices of different engines; which engine speaks for the agent alternates."""
    espeak = Voice("espeak-ng", ESPEAK_VOICES[index % len(ESPEAK_VOICES)], rng.uniform(0.9, 1.15))
    flite = Voice("flite", FLITE_VOICES[index % len(FLITE_VOICES)], rng.uniform(0.9, 1.15))
    return (
        {"agent": espeak, "customer": flite}
        if index % 2 == 0
        else {"agent": flite, "customer": espeak}
    )


class Tracks:
    def __init__(self) -> None:
        self.audio: dict[Speaker, npt.NDArray[np.int16]] = {
            "agent": np.zeros(0, np.int16),
            "customer": np.zeros(0, np.int16),
        }
        self.busy_until: dict[Speaker, int] = {"agent": 0, "customer": 0}

    def put(self, speaker: Speaker, pcm: npt.NDArray[np.int16], at: int) -> None:
        track = self.audio[speaker]
        end = at + pcm.size
        if end > track.size:
            track = np.pad(track, (0, end - track.size))
        track[at:end] = np.clip(track[at:end].astype(np.int32) + pcm, -32768, 32767)
        self.audio[speaker] = track
        self.busy_until[speaker] = max(self.busy_until[speaker], end)

    def write(self, out: Path, tail_s: float = 0.5) -> float:
        n = max(t.size for t in self.audio.values()) + int(tail_s * RATE)
        for speaker, track in self.audio.items():
            write_wav_ulaw(out / f"{speaker}.wav", np.pad(track, (0, n - track.size)), RATE)
        return 1000 * n / RATE


def _ms(samples: int) -> float:
    return round(1000 * samples / RATE, 1)


def render_timed(
    lines: list[Line], voices: dict[Speaker, Voice], call: Call, synth: Synth = speak
) -> Tracks:
    tracks = Tracks()
    for i, line in enumerate(lines):
        text = speakable(line.text)
        if not any(ch.isalpha() for ch in text):
            continue
        voice = voices[line.speaker]
        pcm = synth(text, voice)
        want = (line.duration_ms or 0) / 1000 * RATE
        if want and pcm.size > 1.25 * want:
            faster = Voice(voice.engine, voice.name, min(1.6, voice.rate * pcm.size / want))
            pcm, voice = synth(text, faster), faster
        at = int((line.start_ms or 0) / 1000 * RATE)
        start = at
        busy = tracks.busy_until[line.speaker]
        if busy and at < busy + int(0.15 * RATE):
            start = busy + int(0.15 * RATE)  # never over the same speaker's previous line
        tracks.put(line.speaker, pcm, start)
        call.pieces.append(
            Piece(
                line.speaker,
                text,
                _ms(start),
                _ms(start + pcm.size),
                voice.label,
                "line",
                i,
                _ms(start - at),
            )
        )
    return tracks


def render_untimed(
    lines: list[Line],
    voices: dict[Speaker, Voice],
    call: Call,
    timing: Timing,
    rng: random.Random,
    synth: Synth = speak,
) -> Tracks:
    tracks = Tracks()
    cursor = int(timing.lead_s * RATE)
    for i, line in enumerate(lines):
        text = speakable(line.text)
        if not any(ch.isalpha() for ch in text):
            continue
        if i:
            cursor += int(rng.uniform(*timing.gap_s) * RATE)
        turn_start = cursor
        for script in _chunks(_TAG.sub(" ", line.text).strip(), timing, rng):
            if cursor > turn_start:
                cursor += int(rng.uniform(*timing.pause_s) * RATE)
            chunk, voice = speakable(script), voices[line.speaker]
            pcm = synth(chunk, voice)
            tracks.put(line.speaker, pcm, cursor)
            end = cursor + pcm.size
            piece = Piece(line.speaker, chunk, _ms(cursor), _ms(end), voice.label, "line", i)
            piece.script = script
            call.pieces.append(piece)
            cursor = end
        long_turn = cursor - turn_start > 2.5 * RATE
        if long_turn and rng.random() < timing.backchannel_prob:
            other: Speaker = "customer" if line.speaker == "agent" else "agent"
            word = rng.choice(BACKCHANNELS)
            pcm = synth(word, voices[other])
            at = turn_start + int(rng.uniform(0.4, 0.6) * (cursor - turn_start))
            tracks.put(other, pcm, at)
            call.pieces.append(
                Piece(
                    other, word, _ms(at), _ms(at + pcm.size), voices[other].label, "backchannel", i
                )
            )
    return tracks


def _chunks(text: str, timing: Timing, rng: random.Random) -> list[str]:
    """A turn's sentences, joined except where a long pause falls between them."""
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", text) if s]
    chunks = [sentences[0]]
    for s in sentences[1:]:
        if rng.random() < timing.pause_prob:
            chunks.append(s)
        else:
            chunks[-1] = f"{chunks[-1]} {s}"
    return chunks


def render(
    source: str,
    call_id: str,
    lines: list[Line],
    out_root: Path,
    index: int,
    *,
    timing: Timing = Timing(),
    seed: int = 0,
    synth: Synth = speak,
) -> Path:
    rng = random.Random(f"{seed}:{source}:{call_id}")
    voices = call_voices(index, rng)
    call = Call(source, call_id, {k: v.label for k, v in voices.items()})
    timed = all(line.start_ms is not None for line in lines)
    tracks = (
        render_timed(lines, voices, call)
        if timed
        else render_untimed(lines, voices, call, timing, rng)
    )
    out = out_root / f"{source}-{call_id}"
    out.mkdir(parents=True, exist_ok=True)
    duration = tracks.write(out)
    manifest = {
        **asdict(call),
        "timed": timed,
        "duration_ms": round(duration, 1),
        "sample_rate": RATE,
    }
    manifest["timing"] = None if timed else asdict(timing)
    (out / "call.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", choices=("harper-valley", "sgd", "abcd"))
    ap.add_argument("files", nargs="*", type=Path, help="Harper Valley transcript JSON files")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=20, help="SGD dialogues")
    ap.add_argument("--skip", type=int, default=0, help="SGD dialogues skipped first")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.source == "harper-valley":
        calls = [(f.stem, harper_valley(f)) for f in args.files]
    elif args.source == "sgd":
        calls = sgd_dialogues(limit=args.limit, skip=args.skip)
    else:
        calls = abcd_chats()
    for i, (call_id, lines) in enumerate(calls):
        print(render(args.source, call_id, lines, args.out, i, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
