"""Training and evaluation examples from the vendored public sets and our own written turns.

Every example carries, for each label of its head group, 1 (positive), 0 (negative) or
``None`` (ambiguous under our label definitions: neither trained nor scored on). Public
examples are split by a hash of their normalised text (70 % train, 15 % validation, 15 %
test), so one sentence always lands in one split whatever the seed. Our own files each
belong to one split: ``*_train.yaml`` / templates train, ``*_val.yaml`` validation (chooses
C and thresholds), ``*_test.yaml`` test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from cxguard.policy.textnorm import collapse_amounts
from cxguard.train.labels import GROUPS
from cxguard.train.rules import AgentRules

Split = Literal["train", "val", "test"]
Origin = Literal["public", "own"]


@dataclass(frozen=True)
class Example:
    text: str
    speaker: str
    labels: Mapping[str, int | None]
    source: str
    origin: Origin
    split: Split


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9$%]+", " ", text.lower()).strip()


def bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100


def public_split(text: str) -> Split:
    b = bucket(normalise(text))
    return "train" if b < 70 else "val" if b < 85 else "test"


def make_labels(
    speaker: str, positive: Iterable[str], ignore: Iterable[str] = ()
) -> dict[str, int | None]:
    """Full label vector; short names ("closure") get the speaker prefix."""
    names = list(GROUPS[speaker])
    pos = {p if "." in p else f"{speaker}.{p}" for p in positive}
    ign = {p if "." in p else f"{speaker}.{p}" for p in ignore} - pos
    unknown = (pos | ign) - set(names)
    if unknown:
        raise ValueError(f"unknown labels {sorted(unknown)}")
    out: dict[str, int | None] = {n: (1 if n in pos else None if n in ign else 0) for n in names}
    other = f"{speaker}.other"
    if other in out:
        real = [v for k, v in out.items() if k != other]
        out[other] = 0 if 1 in real else None if None in real else 1
    return out


# --------------------------------------------------------------------------- public, customer side

_B77_POS = {
    "terminate_account": ["closure"],
    "request_refund": ["dispute"],
    "transaction_charged_twice": ["dispute"],
    "card_payment_not_recognised": ["dispute"],
    "direct_debit_payment_not_recognised": ["dispute"],
    "cash_withdrawal_not_recognised": ["dispute"],
    "wrong_amount_of_cash_received": ["dispute"],
    "extra_charge_on_statement": ["billing_question"],
    "card_payment_fee_charged": ["billing_question"],
    "transfer_fee_charged": ["billing_question"],
    "exchange_charge": ["billing_question"],
    "cash_withdrawal_charge": ["billing_question"],
    "top_up_by_card_charge": ["billing_question"],
    "top_up_by_bank_transfer_charge": ["billing_question"],
}
# Intents whose texts our definitions cannot decide for a label (blocking a stolen card is
# "cancel my card" but not an account closure; a fee question may also contest the fee).
_B77_IGNORE = {
    "compromised_card": ["closure"],
    "lost_or_stolen_card": ["closure"],
    "lost_or_stolen_phone": ["closure"],
    "Refund_not_showing_up": ["dispute"],
    "card_payment_wrong_exchange_rate": ["dispute"],
    "wrong_exchange_rate_for_cash_withdrawal": ["dispute"],
    "reverted_card_payment?": ["dispute"],
    "extra_charge_on_statement": ["dispute"],
    "card_payment_fee_charged": ["dispute"],
    "transfer_fee_charged": ["dispute"],
    "exchange_charge": ["dispute"],
    "cash_withdrawal_charge": ["dispute"],
}
_CLINC_POS = {
    n: ["billing_question"] for n in ("bill_balance", "bill_due", "pay_bill", "min_payment")
}
_CLINC_IGNORE = {"report_fraud": ["dispute"], "freeze_account": ["closure"]}
_CLINC_KEEP_ALL = {"banking", "credit_cards", "meta", "small_talk"}
_CLINC_SAMPLE_PCT = 35  # percent of each other-domain intent that is kept
_BITEXT_POS = {
    "delete_account": ["closure"],
    "contact_human_agent": ["human_request"],
    "check_invoice": ["billing_question"],
    "get_invoice": ["billing_question"],
    "check_payment_methods": ["billing_question"],
    "payment_issue": ["billing_question"],
    "check_cancellation_fee": ["billing_question"],
    "get_refund": ["dispute"],
}
_BITEXT_IGNORE = {
    "check_cancellation_fee": ["closure"],
    "contact_customer_service": ["human_request"],
    "payment_issue": ["payment_difficulty"],
    "track_refund": ["dispute", "billing_question"],
    "check_refund_policy": ["dispute", "billing_question"],
    "complaint": ["dispute"],
}


def _public(
    text: str, speaker: str, source: str, pos: Iterable[str], ign: Iterable[str]
) -> Example:
    return Example(
        text, speaker, make_labels(speaker, pos, ign), source, "public", public_split(text)
    )


def banking77(root: Path) -> Iterator[Example]:
    with (root / "banking77" / "train.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            cat = row["category"]
            yield _public(
                row["text"],
                "customer",
                "banking77",
                _B77_POS.get(cat, []),
                _B77_IGNORE.get(cat, []),
            )


def clinc150(root: Path) -> Iterator[Example]:
    data = json.loads((root / "clinc150" / "clinc150_train_val.json").read_text())
    domains = json.loads((root / "clinc150" / "domains.json").read_text())
    domain_of = {intent: d for d, intents in domains.items() for intent in intents}
    for part in ("train", "val", "oos_train", "oos_val"):
        for text, intent in data[part]:
            domain = domain_of.get(intent, "oos")
            if domain not in _CLINC_KEEP_ALL and bucket("clinc:" + text) >= _CLINC_SAMPLE_PCT:
                continue  # other domains only teach "other": a hash-chosen sample is enough
            yield _public(
                text,
                "customer",
                "clinc150",
                _CLINC_POS.get(intent, []),
                _CLINC_IGNORE.get(intent, []),
            )


def nluplusplus(root: Path) -> Iterator[Example]:
    for fold in range(15):
        for item in json.loads((root / "nluplusplus" / f"banking_fold{fold}.json").read_text()):
            text, intents = item["text"], set(item.get("intents", []))
            pos: list[str] = []
            ign: list[str] = []
            if "handoff" in intents:
                pos.append("human_request")
            if "cancel_close_leave_freeze" in intents:
                if "account" in intents and "freeze" not in text.lower():
                    pos.append("closure")
                elif not intents & {
                    "card",
                    "direct_debit",
                    "standing_order",
                    "appointment",
                    "transfer_payment_deposit",
                }:
                    ign.append("closure")  # "I want to leave", "close it", a loan: undecidable
            if "refund" in intents:
                ign.append("dispute")  # mixes refund demands with refund-status questions
            if "fees_interests" in intents:
                ign.append("billing_question")
            yield _public(text, "customer", "nluplusplus", pos, ign)


def bitext(root: Path) -> Iterator[Example]:
    with (root / "bitext" / "bitext_instructions.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            it = row["intent"]
            yield _public(
                row["instruction"],
                "customer",
                "bitext",
                _BITEXT_POS.get(it, []),
                _BITEXT_IGNORE.get(it, []),
            )


def sgd(root: Path) -> Iterator[Example]:
    """Real task-oriented turns: user turns are customer "other"; system turns are agent
    negatives (none of them transfers, closes, promises or verifies), except that a system
    offering another service is left undecided for ``agent.off_topic``."""
    with (root / "sgd" / "sgd_banks1_turns.jsonl").open() as f:
        for line in f:
            t = json.loads(line)
            if t["speaker"] == "USER":
                if t["services"] == ["Banks_1"]:
                    yield _public(t["utterance"], "customer", "sgd", [], [])
                continue
            off = "OFFER_INTENT" in t["acts"] or t["services"] != ["Banks_1"]
            yield _public(t["utterance"], "agent", "sgd", [], ["off_topic"] if off else [])


def abcd(root: Path, labels_file: Path) -> Iterator[Example]:
    """ABCD's sample chats: real agent turns, labelled by hand in ``abcd_labels.yaml``;
    evaluation only (three chats are too few to train on)."""
    labelled = {normalise(k): v for k, v in yaml.safe_load(labels_file.read_text()).items()}
    for convo in json.loads((root / "abcd" / "abcd_sample.json").read_text()):
        for speaker, text in convo["original"]:
            if speaker != "agent":
                continue
            spec = labelled.get(normalise(text), "none")
            pos = [] if spec == "none" else spec.split("+")
            yield Example(text, "agent", make_labels("agent", pos), "abcd", "public", "test")


# --------------------------------------------------------------------------- our own files


def own_file(path: Path, speaker: str, split: Split) -> Iterator[Example]:
    """A YAML file of ``label+label: [texts]``, all in one split."""
    spec = yaml.safe_load(path.read_text())
    for key, texts in spec.items():
        pos = [] if key == "none" else key.split("+")
        for text in texts or []:
            yield Example(
                text, speaker, make_labels(speaker, pos), f"own.{path.stem}", "own", split
            )


def probes(data_dir: Path, demo_dialogue: Path) -> set[str]:
    """Normalised texts that tests check: never trained on, never used to pick thresholds."""
    texts = [p["text"] for p in yaml.safe_load((data_dir / "own" / "probes.yaml").read_text())]
    texts += [t["text"] for t in json.loads(demo_dialogue.read_text())["turns"]]
    # Also as the agent heads read them, so a probe cannot return with its amounts collapsed.
    return {normalise(t) for t in texts} | {normalise(collapse_amounts(t)) for t in texts}


# --------------------------------------------------------------------------- other writers, agent


def bitext_responses(root: Path, rules: AgentRules) -> Iterator[Example]:
    """Bitext's written answers as spoken agent turns (cut by :meth:`AgentRules.spoken`),
    labelled by the pre-written rules; split with the request they answer, so a request and
    its answer always land in the same split."""
    with (root / "bitext" / "bitext_responses.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            text = rules.spoken(row["response"])
            if not text:
                continue
            yield Example(
                text,
                "agent",
                rules.labels(text, "bitext"),
                "bitext_response",
                "public",
                public_split(row["instruction"]),
            )


AGENT_LINE_LABELS = {
    "commitment": "agent.unauthorized_commitment",
    "payment_arrangement": "agent.payment_arrangement",
    "escalation": "agent.escalation",
}
"""Columns of the read agent-line files (``data/public/*/agent_lines*.jsonl``) and the head
label each one decides: training here and ``benchmarks/agent_lines_eval.py`` share it."""


def taubench_lines(root: Path) -> Iterator[Example]:
    """tau-bench's airline agent sentences, labelled by reading (``taubench/README.md``) for
    commitment, payment arrangement and escalation, and trained on for those three only: the
    pre-written rules were not written for its flows ("Could you please provide your user ID?"
    is identification there, which the rules call no verification request). The file holds
    even-numbered tasks only (odd tasks are the evaluation set), split by task so that one
    task's trials never straddle train and validation."""
    with (root / "taubench" / "agent_lines_airline_train.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            task = int(row["source"].rsplit("#task", 1)[1])
            labels: dict[str, int | None] = dict.fromkeys(make_labels("agent", []))
            labels.update({name: row[key] for key, name in AGENT_LINE_LABELS.items()})
            yield Example(
                row["text"],
                "agent",
                labels,
                "taubench",
                "public",
                "val" if task % 8 == 0 else "train",
            )


def asr_channel(path: Path, examples: Iterable[Example]) -> Iterator[Example]:
    """What Whisper heard when a training turn was spoken (``cxguard.train.asr_channel``),
    with the labels of the turn it came from; training split only."""
    if not path.exists():
        return
    by_text = {(e.speaker, e.text): e for e in examples if e.split == "train"}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        origin = by_text.get((row["speaker"], row["text"]))
        if origin is None or not row["asr"].strip():
            continue  # the text is no longer a training turn
        yield Example(
            row["asr"],
            origin.speaker,
            origin.labels,
            f"asr.{origin.source}",
            origin.origin,
            "train",
        )
