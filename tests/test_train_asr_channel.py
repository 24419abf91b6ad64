"""Which training turns are spoken through the telephone channel (cxguard.train.asr_channel)."""

from __future__ import annotations

import json
from pathlib import Path

from cxguard.train.asr_channel import replayed_sgd_texts, select
from cxguard.train.corpus import Example, make_labels


def turn(text: str, positive: tuple[str, ...] = ()) -> Example:
    return Example(text, "customer", make_labels("customer", positive), "t", "public", "train")


def test_the_replayed_dialogues_are_never_spoken(tmp_path: Path) -> None:
    rows = [
        {"dialogue_id": d, "utterance": u}
        for d, u in [("1", "What's my balance?"), ("1", "In checking."), ("2", "Send $5 to Ann.")]
    ]
    sgd = tmp_path / "sgd.jsonl"
    sgd.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replayed = replayed_sgd_texts(sgd, 1)
    assert replayed == {"what s my balance", "in checking"}
    pool = [turn("What's my balance?"), turn("In checking"), turn("Send $5 to Ann.")]
    chosen = select(pool, 0, 10, exclude=replayed)
    assert [e.text for e in chosen] == ["Send $5 to Ann."]


def test_positives_of_one_label_fill_half_the_cap() -> None:
    pool = [turn(f"close it {i}", ("closure",)) for i in range(10)]
    pool += [turn(f"is my bill high {i}", ("billing_question",)) for i in range(10)]
    pool += [turn(f"hello {i}") for i in range(10)]
    chosen = select(pool, 0, 8, label="customer.closure")
    closures = [e for e in chosen if e.labels["customer.closure"] == 1]
    assert len(chosen) == 8 and len(closures) >= 4
    anything = select(pool, 0, 8)  # without a label, any positive counts for the half
    assert sum(e.text.startswith("hello") for e in anything) <= 4


def test_the_channel_speaks_amounts_as_written() -> None:
    # The heads read "[AMOUNT]"; a voice must say "$40", or Whisper hears "Amongst".
    from cxguard.train.cli import REPO, load_examples

    demo = REPO / "cxguard" / "data" / "demo" / "dialogue.json"
    kept = load_examples(REPO / "data", demo, 0, with_asr=False, collapse=False)
    agent = [e.text for e in kept if e.speaker == "agent" and e.source == "taubench"]
    assert any("$" in t for t in agent) and not any("[AMOUNT]" in t for t in agent)


def test_a_run_without_a_cache_keeps_the_committed_rows(tmp_path: Path) -> None:
    # write_out rewrites the whole file from what is done: a fresh machine has no cache, and
    # the rows already committed must survive a run that speaks nothing new.
    from cxguard.train import asr_channel

    out = tmp_path / "asr_channel.jsonl"
    row = {"asr": "hello", "speaker": "agent", "text": "Hello.", "voice": "flite:slt@1"}
    out.write_text(json.dumps(row) + "\n")
    asr_channel.transcribe_all([], tmp_path / "cache.jsonl", out)
    assert [json.loads(line) for line in out.read_text().splitlines()] == [row]
