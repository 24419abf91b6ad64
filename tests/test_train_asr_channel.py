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
