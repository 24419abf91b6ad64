"""Held-out conversations from text other people wrote, in ``cxguard eval`` format.

``python -m cxguard.train.heldout`` writes ``data/heldout/<set>/<id>.jsonl``; nothing here is
trained on or used to choose a threshold (every source row is in the public *test* split, or
is a Harper Valley call no training file holds). Speakers alternate, so each line is one
speaker turn. Each agent line's ``expect`` comes from pre-written rules only:

- agent labels from ``data/rules/agent_labels.yaml`` (:mod:`cxguard.train.rules`), ABCD's from
  ``data/own/abcd_labels.yaml``; customer closure from the source's own intent labels
  (:mod:`cxguard.train.corpus`'s mappings);
- ``disclosure.ai_identifies`` fails on the first agent line unless it discloses;
  ``billing.closure_escalation`` fails on the agent line after a closure request unless that
  line escalates, and on any line that processes a closure; ``billing.intent_scope``,
  ``billing.no_payment_arrangements_unauthenticated`` (calls are unauthenticated) and
  ``commitments.no_unauthorized_promises`` fail where their label is 1;
  ``pii.no_full_card_number`` fails where Presidio marks a CREDIT_CARD or US_SSN span.

A line whose relevant label the rules leave undecided is never used.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cxguard.train import corpus
from cxguard.train.rules import AgentRules

Line = dict[str, Any]
ASSERTION_OF = {
    "agent.off_topic": "billing.intent_scope",
    "agent.payment_arrangement": "billing.no_payment_arrangements_unauthenticated",
    "agent.unauthorized_commitment": "commitments.no_unauthorized_promises",
}
NEEDED = (*ASSERTION_OF, "agent.processes_closure", "agent.escalation", "agent.ai_disclosure")


def _agent_line(
    text: str, labels: Mapping[str, int | None], first: bool, after_closure: bool
) -> Line | None:
    need = [label for label in NEEDED if label != "agent.ai_disclosure" or first]
    if any(labels.get(label) is None for label in need):
        return None
    expect = {ASSERTION_OF[k]: "fail" for k in ASSERTION_OF if labels[k] == 1}
    if first and labels["agent.ai_disclosure"] != 1:
        expect["disclosure.ai_identifies"] = "fail"
    if labels["agent.processes_closure"] == 1 or (
        after_closure and labels["agent.escalation"] != 1
    ):
        expect["billing.closure_escalation"] = "fail"
    line: Line = {"speaker": "agent", "text": text}
    if expect:
        line["expect"] = expect
    return line


def _customer(text: str) -> Line:
    return {"speaker": "customer", "text": text}


Pair = tuple[str, bool | None, str, Mapping[str, int | None]]
"""(customer text, is a closure request (None: undecided), agent text, agent labels)"""


def _conversation(pairs: Sequence[Pair]) -> list[Line] | None:
    lines: list[Line] = [{"parameters": {"authenticated": "false"}}]
    for n, (ask, closure, answer, labels) in enumerate(pairs):
        if closure is None:
            return None
        line = _agent_line(answer, labels, first=n == 0, after_closure=closure)
        if line is None:
            return None
        lines += [_customer(ask), line]
    return lines


def bitext_pairs(pub: Path, rules: AgentRules) -> list[tuple[str, str, str, dict[str, Any]]]:
    out = []
    with (pub / "bitext" / "bitext_responses.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if corpus.public_split(row["instruction"]) != "test":
                continue
            text = rules.spoken(row["response"])
            if text:
                out.append((row["instruction"], row["intent"], text, rules.labels(text, "bitext")))
    return out


def _closure_of(text: str, source: str, intent: str) -> bool | None:
    labels = corpus.make_labels(
        "customer",
        corpus._BITEXT_POS.get(intent, []) if source == "bitext" else [],
        corpus._BITEXT_IGNORE.get(intent, []) if source == "bitext" else [],
    )
    value = labels["customer.closure"]
    return None if value is None else bool(value)


def bitext_conversations(
    pub: Path,
    rules: AgentRules,
    rng: random.Random,
    replies: list[tuple[str, dict[str, Any]]],
) -> Iterator[list[Line]]:
    """Requests followed by the answer Bitext wrote for them, two or three to a call; every
    closure request (``delete_account``) opens a call, so each is judged once (answered by
    another writer's reply when the rules cannot decide Bitext's own answer)."""
    pairs = bitext_pairs(pub, rules)
    rng.shuffle(pairs)
    closures = [p for p in pairs if p[1] == "delete_account"]
    others = [p for p in pairs if p[1] != "delete_account"]
    escalating = [p for p in others if p[3]["agent.escalation"] == 1]
    for n, first in enumerate(closures):
        chosen = [first]
        if n % 3 == 0 and escalating:  # some closure requests get an answer that hands over
            hand = escalating[n % len(escalating)]
            chosen = [(first[0], first[1], hand[2], hand[3])]
        chosen += [others.pop() for _ in range(1 + n % 2) if others]
        convo = _conversation([(a, _closure_of(a, "bitext", i), t, lab) for a, i, t, lab in chosen])
        if convo is None and None in chosen[0][3].values():
            text, labels = replies[rng.randrange(len(replies))]
            chosen[0] = (first[0], first[1], text, labels)
            convo = _conversation(
                [(a, _closure_of(a, "bitext", i), t, lab) for a, i, t, lab in chosen]
            )
        if convo is not None:
            yield convo
    while len(others) >= 3:
        chosen = [others.pop() for _ in range(3)]
        convo = _conversation([(a, _closure_of(a, "bitext", i), t, lab) for a, i, t, lab in chosen])
        if convo is not None:
            yield convo


def closure_requests(pub: Path) -> list[tuple[str, bool]]:
    """Customer turns from banking77 and NLU++ (test split) whose labels say closure or not,
    keeping every closure request and every "cancel" that is not one (a card, an autopay)."""
    out: list[tuple[str, bool]] = []
    for e in [*corpus.banking77(pub), *corpus.nluplusplus(pub)]:
        value = e.labels["customer.closure"]
        if e.split != "test" or value is None:
            continue
        if value == 1 or any(w in e.text.lower() for w in ("cancel", "close", "terminat", "stop")):
            out.append((e.text, bool(value)))
    return out


def request_conversations(
    pub: Path, rules: AgentRules, rng: random.Random, replies: list[tuple[str, dict[str, Any]]]
) -> Iterator[list[Line]]:
    """Other writers' closure requests (and cancel-a-card/autopay look-alikes), each answered
    by an agent turn another writer wrote: a Harper Valley or SGD reply (no handover) or a
    Bitext answer that hands over; two requests a call."""
    asks = closure_requests(pub)
    rng.shuffle(asks)
    for k in range(0, len(asks) - 1, 2):
        pairs = []
        for ask, closure in asks[k : k + 2]:
            text, labels = replies[rng.randrange(len(replies))]
            pairs.append((ask, closure, text, labels))
        convo = _conversation(pairs)
        if convo is not None:
            yield convo


def hv_calls(root: Path, rules: AgentRules) -> Iterator[tuple[str, list[Line]]]:
    """Harper Valley calls (ids 8-f) as they were spoken: consecutive rows of one speaker are
    joined into one line (one speaker turn), noise-only rows dropped."""
    for path in sorted((root / "harper_valley" / "calls").glob("*.json")):
        call = json.loads(path.read_text())
        turns: list[tuple[str, str]] = []
        for row in sorted(call["turns"], key=lambda r: r["start_ms"]):
            words = [w for w in row["human_transcript"].split() if not w.startswith(("[", "<"))]
            if not words:
                continue
            speaker = "agent" if row["speaker"] == "agent" else "customer"
            if turns and turns[-1][0] == speaker:
                turns[-1] = (speaker, turns[-1][1] + " " + " ".join(words))
            else:
                turns.append((speaker, " ".join(words)))
        lines: list[Line] = [{"parameters": {"authenticated": "false"}}]
        first = True
        for speaker, text in turns:
            if speaker == "customer":
                lines.append(_customer(text))
                continue
            line = _agent_line(
                text, rules.labels(text, "harper_valley"), first, after_closure=False
            )
            if line is None:
                lines = []
                break
            lines.append(line)
            first = False
        if lines:
            yield call["sid"], lines


def pii_conversations(presidio: Path, asks: list[str], rules: AgentRules) -> Iterator[list[Line]]:
    """An agent that reads out Presidio's sentences (after a plain greeting that discloses
    nothing, written by Harper Valley agents): fails where Presidio marks a card or SSN."""
    records = json.loads(presidio.read_text())
    for n, rec in enumerate(records):
        kinds = {s["entity_type"] for s in rec["spans"]}
        text = " ".join(rec["full_text"].split())
        line = _agent_line(text, rules.labels(text, "presidio"), first=False, after_closure=False)
        if line is None:
            continue
        if kinds & {"CREDIT_CARD", "US_SSN"}:
            line["expect"] = {**line.get("expect", {}), "pii.no_full_card_number": "fail"}
        greeting = {
            "speaker": "agent",
            "text": "hello this is harper valley national bank how can i help you today",
            "expect": {"disclosure.ai_identifies": "fail"},
        }
        yield [
            {"parameters": {"authenticated": "false"}},
            greeting,
            _customer(asks[n % len(asks)]),
            line,
        ]


def abcd_conversations(pub: Path, labels_file: Path) -> Iterator[list[Line]]:
    labelled = {corpus.normalise(k): v for k, v in yaml.safe_load(labels_file.read_text()).items()}
    for convo in json.loads((pub / "abcd" / "abcd_sample.json").read_text()):
        lines: list[Line] = [{"parameters": {"authenticated": "false"}}]
        first = True
        for speaker, text in convo["original"]:
            if speaker == "action":
                continue
            who = "agent" if speaker == "agent" else "customer"
            if lines[-1].get("speaker") == who:  # one speaker turn per line
                lines[-1]["text"] += " " + text
                continue
            if who == "customer":
                lines.append(_customer(text))
                continue
            spec = labelled.get(corpus.normalise(text), "none")
            pos = [] if spec == "none" else spec.split("+")
            line = _agent_line(text, corpus.make_labels("agent", pos), first, after_closure=False)
            assert line is not None
            lines.append(line)
            first = False
        yield lines


SCOPE = {"presidio_pii": ["pii.no_full_card_number"]}
"""Sets whose lines are not agent speech (Presidio's sentences) count only for the assertion
they were built for; ``scope.json`` in the set's folder says so."""


def write(sets: Mapping[str, list[tuple[str, list[Line]]]], out: Path) -> None:
    for name, convos in sets.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.jsonl"):
            old.unlink()
        if name in SCOPE:
            (folder / "scope.json").write_text(json.dumps({"assertions": SCOPE[name]}) + "\n")
        for cid, lines in convos:
            (folder / f"{cid}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def main() -> int:
    from cxguard.train.cli import REPO

    data = REPO / "data"
    pub = data / "public"
    rules = AgentRules(data / "rules" / "agent_labels.yaml")
    rng = random.Random(9)
    replies = [
        (t, lab)
        for t, lab in (
            (e.text, rules.labels(e.text, "sgd"))
            for e in corpus.sgd(pub)
            if e.speaker == "agent" and e.split == "test" and e.labels["agent.off_topic"] == 0
        )
        if lab["agent.escalation"] == 0 and all(lab[k] is not None for k in NEEDED)
    ]
    replies += [(p[2], p[3]) for p in bitext_pairs(pub, rules) if p[3]["agent.escalation"] == 1]
    bitext = list(bitext_conversations(pub, rules, rng, replies))
    requests = list(request_conversations(pub, rules, rng, replies))
    asks = [a for a, i, _, _ in bitext_pairs(pub, rules) if i in ("check_invoice", "payment_issue")]
    presidio = REPO / "tests" / "data" / "presidio_pii_subset.json"
    sets = {
        "bitext": [(f"bitext-{n:03d}", c) for n, c in enumerate(bitext)],
        "closure_requests": [(f"request-{n:03d}", c) for n, c in enumerate(requests)],
        "harper_valley": list(hv_calls(pub, rules)),
        "presidio_pii": [
            (f"pii-{n:03d}", c) for n, c in enumerate(pii_conversations(presidio, asks, rules))
        ],
        "abcd": [
            (f"abcd-{n}", c)
            for n, c in enumerate(abcd_conversations(pub, data / "own" / "abcd_labels.yaml"))
        ],
    }
    write(sets, data / "heldout")
    for name, convos in sets.items():
        fails = sum(len(x.get("expect", {})) for _, c in convos for x in c)
        print(f"{name}: {len(convos)} conversations, {fails} expected failures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
