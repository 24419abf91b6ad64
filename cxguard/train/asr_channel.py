"""Training turns as the heads will meet them live: spoken by a synthetic voice, squeezed
through an 8 kHz μ-law telephone channel and transcribed by the shipped Whisper model.

``python -m cxguard.train.asr_channel`` (run once, not by ``cxguard train``) picks a seeded,
capped sample of training texts (:func:`select`), speaks each with one of several espeak-ng /
flite voices and rates, and writes what ``tiny.en`` heard to ``data/asr/asr_channel.jsonl``:
``{"text", "speaker", "voice", "asr"}``. ``cxguard train`` then adds every ``asr`` text with
the labels of its ``text`` (see :func:`cxguard.train.corpus.asr_channel`), so a rebuild
needs neither TTS nor Whisper and stays byte-for-byte reproducible from ``data/``.

CPU-heavy on the 2-core box: run it under ``nice``; results are cached per (text, voice) in
``--cache`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxguard.train.corpus import Example, bucket, normalise


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak-ng" | "flite"
    name: str
    rate: float  # espeak words per minute, or flite duration stretch

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}@{self.rate:g}"


VOICES: tuple[Voice, ...] = (
    Voice("espeak-ng", "en-us", 165),
    Voice("espeak-ng", "en-us+f3", 185),
    Voice("espeak-ng", "en-gb", 150),
    Voice("espeak-ng", "en-us+m3", 200),
    Voice("espeak-ng", "en-029", 170),
    Voice("flite", "slt", 1.0),
    Voice("flite", "rms", 1.15),
    Voice("flite", "awb", 0.9),
    Voice("flite", "kal", 1.0),
)


def speak(text: str, voice: Voice, tmp: Path) -> np.ndarray:
    """16-bit PCM at 8 kHz after a μ-law round trip (what a telephone leg delivers)."""
    wav, ulaw = tmp / "tts.wav", tmp / "ulaw.wav"
    if voice.engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice.name, "-s", str(int(voice.rate)), "-w", str(wav), text]
    else:
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={voice.rate}"]
        cmd += ["-t", text, "-o", str(wav)]
    subprocess.run(cmd, check=True, capture_output=True)
    subprocess.run(
        ["sox", str(wav), "-r", "8000", "-c", "1", "-e", "u-law", str(ulaw)],
        check=True,
        capture_output=True,
    )
    raw = subprocess.run(
        ["sox", str(ulaw), "-t", "raw", "-e", "signed", "-b", "16", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").copy()


MAX_WORDS = 40  # one sentence window of the runtime (policy.matchers.WINDOW_WORDS)


def select(
    examples: Iterable[Example],
    cap_agent: int,
    cap_customer: int,
    source_prefix: str = "",
    exclude: frozenset[str] = frozenset(),
    label: str | None = None,
) -> list[Example]:
    """A deterministic sample of training turns, chosen by a hash of the text (never by a
    model's output): half of each cap from turns with a positive label (``label`` only, when
    given), the rest from all. Texts in ``exclude`` (normalised) are never chosen."""
    chosen: list[Example] = []
    for speaker, cap in (("agent", cap_agent), ("customer", cap_customer)):
        pool = sorted(
            (
                e
                for e in examples
                if e.speaker == speaker
                and e.split == "train"
                and e.source.startswith(source_prefix)
                and len(e.text.split()) <= MAX_WORDS
                and normalise(e.text) not in exclude
            ),
            key=lambda e: bucket("asr:" + normalise(e.text)),
        )
        positives = [e for e in pool if _positive(e, label)]
        seen: set[str] = set()
        for part, limit in ((positives, cap // 2), (pool, cap)):
            for e in part:
                if len(seen) >= limit:
                    break
                if normalise(e.text) not in seen:
                    seen.add(normalise(e.text))
                    chosen.append(e)
    return chosen


def replayed_sgd_texts(path: Path, dialogues: int) -> frozenset[str]:
    """The turns of the first ``dialogues`` SGD dialogues in file order: the ones the replay
    benchmark renders (``scripts/replay/render.py sgd --skip/--limit``), kept out of training
    so the replayed calls stay unseen through the ASR channel."""
    seen: list[str] = []
    texts: set[str] = set()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["dialogue_id"] not in seen:
            if len(seen) == dialogues:
                break
            seen.append(row["dialogue_id"])
        texts.add(normalise(row["utterance"]))
    return frozenset(texts)


def _positive(e: Example, label: str | None = None) -> bool:
    if label is not None:
        return e.labels.get(label) == 1
    return any(v == 1 for k, v in e.labels.items() if not k.endswith(".other"))


def _cached(cache: Path) -> dict[tuple[str, str], dict[str, str]]:
    done: dict[tuple[str, str], dict[str, str]] = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[(row["text"], row["voice"])] = row
    return done


def write_out(done: dict[tuple[str, str], dict[str, str]], out: Path) -> None:
    rows = sorted(  # every turn transcribed so far: runs over several sources accumulate
        (r for r in done.values() if r["asr"]),
        key=lambda r: (r["speaker"], r["text"]),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    print(f"wrote {len(rows)} transcribed turns to {out}")


def transcribe_all(
    items: Sequence[tuple[str, str]], cache: Path, out: Path, log_every: int = 100
) -> None:
    from cxguard.asr import Transcriber
    from cxguard.asr.guards import AsrRejected

    # The committed file counts as done too: a fresh machine has no cache, and write_out
    # rewrites the whole file from what is done.
    done = {**_cached(out), **_cached(cache)}
    asr = Transcriber()
    with tempfile.TemporaryDirectory() as tmpdir, cache.open("a") as log:
        tmp = Path(tmpdir)
        for n, (text, speaker) in enumerate(items):
            voice = VOICES[bucket("voice:" + text) % len(VOICES)]
            if (text, voice.label) in done:
                continue
            pcm = speak(text, voice, tmp)
            try:
                heard = asr.transcribe(pcm, 8000).text.strip()
            except AsrRejected as exc:
                heard = ""  # refused turns are undetermined live; nothing to learn from
                reason = exc.reason if hasattr(exc, "reason") else str(exc)
                print(f"rejected ({reason}): {text!r}")
            row = {"text": text, "speaker": speaker, "voice": voice.label, "asr": heard}
            done[(text, voice.label)] = row
            log.write(json.dumps(row) + "\n")
            log.flush()
            if n % log_every == 0:
                print(f"{n}/{len(items)} {voice.label}: {text!r} -> {heard!r}", flush=True)
    write_out(done, out)


def main(argv: Sequence[str] | None = None) -> int:
    from cxguard.train.cli import REPO, load_examples

    parser = argparse.ArgumentParser(prog="python -m cxguard.train.asr_channel")
    parser.add_argument("--agent", type=int, default=1600, help="agent turns to speak")
    parser.add_argument("--customer", type=int, default=900, help="customer turns to speak")
    parser.add_argument("--source", default="", help="only sources starting with this")
    parser.add_argument("--label", help="positives are turns with this label (default: any)")
    parser.add_argument(
        "--replayed-dialogues",
        type=int,
        default=240,
        help="never speak turns of the first N SGD dialogues (the replay benchmark's calls)",
    )
    parser.add_argument("--cache", type=Path, default=Path("/work/scratch/clf_asr/cache.jsonl"))
    parser.add_argument("--out", type=Path, default=REPO / "data" / "asr" / "asr_channel.jsonl")
    parser.add_argument(
        "--write-only", action="store_true", help="write --out from the cache, speak nothing"
    )
    args = parser.parse_args(argv)
    if args.write_only:
        write_out(_cached(args.cache), args.out)
        return 0
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    examples = load_examples(
        REPO / "data",
        REPO / "cxguard" / "data" / "demo" / "dialogue.json",
        seed=0,
        with_asr=False,
        collapse=False,
    )
    replayed = replayed_sgd_texts(
        REPO / "data" / "public" / "sgd" / "sgd_banks1_turns.jsonl", args.replayed_dialogues
    )
    chosen = select(examples, args.agent, args.customer, args.source, replayed, args.label)
    transcribe_all([(e.text, e.speaker) for e in chosen], args.cache, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
