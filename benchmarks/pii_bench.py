"""The PII module measured against the two detectors it replaced, in the same process.

    PYTHONPATH=. .venv/bin/python benchmarks/pii_bench.py [--n 300] [--out FILE]

Prints one JSON object:

* ``recall``: per form (``cxguard.pii.forms``) and kind, the share of generated numbers the
  ``check`` finds and the share redaction masks with no 4 digits left -- for ``cxguard.pii``
  and for the old pair (``benchmarks/legacy_pii``: ``policy/detectors.py`` behind the check,
  ``evidence/redaction.py`` behind redaction);
* ``agreement``: share of texts where "redaction masks a card/SSN" equals "the check fails";
* ``false_positives``: presidio spans of other entities (phones, dates, zips, ages, IBANs …)
  touched, and natural agent turns (SGD Banks_1 system turns, with amounts and dates) in which
  a card/SSN/CVV is found; for the new module also how many of those turns the per-call window
  changes at all (``[DIGITS]`` masks) and how many amounts it keeps readable;
* ``sequences``: numbers read in 2-7 pieces across turns: completed by the check, and the most
  digits left readable in the stored texts (the old detectors see no sequences);
* ``cost_us_per_turn``: median µs per turn over a mix of SGD turns and generated number turns
  (parse cache cleared each pass), for the check + redaction of one turn, old vs new.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from legacy_pii import detectors as old_check  # noqa: E402
from legacy_pii import redaction as old_redaction  # noqa: E402

from cxguard import pii  # noqa: E402
from cxguard.model import TurnText  # noqa: E402
from cxguard.pii import detect, forms  # noqa: E402
from cxguard.pii.text import parse  # noqa: E402

PRESIDIO = ROOT / "tests" / "data" / "presidio_pii_subset.json"
SGD = ROOT / "data" / "public" / "sgd" / "sgd_banks1_turns.jsonl"
LEADS = ["my card number is", "it's", "sure, the card is", "", "okay so"]


def readable(text: str) -> str:
    return "".join(r.digits for r in parse(text).runs)


def survives(number: str, text: str, n: int = 4) -> bool:
    left = readable(text)
    return any(number[i : i + n] in left for i in range(len(number) - n + 1))


def old_finds(kind: str, text: str) -> bool:
    if kind == "cvv":
        return False  # the old check had no CVV
    return old_check.run_check(kind, text) is not None  # type: ignore[arg-type]


def new_finds(kind: str, text: str) -> bool:
    return pii.check(kind, text) is not None  # type: ignore[arg-type]


MASK = {"card_number": "[CARD]", "ssn": "[SSN]", "cvv": "[CVV]"}


def generated(kind: str, form: str, rng: random.Random) -> tuple[str, str]:
    if kind == "card_number":
        n = forms.random_card(rng)
        return n, f"{rng.choice(LEADS)} {forms.speak(n, form, rng, forms.card_groups(n))} thanks"
    if kind == "ssn":
        n = forms.random_ssn(rng)
        lead = rng.choice(["my social is", "it's", "SSN"])
        return n, f"{lead} {forms.speak(n, form, rng, (3, 2, 4))}"
    n = "".join(rng.choice("0123456789") for _ in range(rng.choice((3, 4))))
    return n, f"the security code is {forms.speak(n, form, rng, (len(n),))}"


def recall(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    agree = {"new": [0, 0], "old": [0, 0]}
    for kind in ("card_number", "ssn", "cvv"):
        for form in forms.FORMS:
            if kind == "cvv" and form == "sentence_split":
                continue
            rng = random.Random(f"{kind}{form}")
            hits = {"new_check": 0, "new_redact": 0, "old_check": 0, "old_redact": 0}
            for _ in range(n):
                number, text = generated(kind, form, rng)
                new_out, old_out = pii.redact(text), old_redaction.redact(text)
                new_c, old_c = new_finds(kind, text), old_finds(kind, text)
                hits["new_check"] += new_c
                hits["old_check"] += old_c
                hits["new_redact"] += MASK[kind] in new_out and not survives(number, new_out)
                hits["old_redact"] += MASK[kind] in old_out and not survives(number, old_out)
                if kind != "cvv":
                    agree["new"][0] += (MASK[kind] in new_out) == new_c
                    agree["old"][0] += (MASK[kind] in old_out) == old_c
                    agree["new"][1] += 1
                    agree["old"][1] += 1
            out[f"{kind}/{form}"] = {k: round(v / n, 3) for k, v in hits.items()}
    return {"recall": out, "agreement": {k: round(a / b, 4) for k, (a, b) in agree.items()}}


def presidio() -> dict[str, Any]:
    records = json.loads(PRESIDIO.read_text(encoding="utf-8"))
    spans_new: dict[str, list[int]] = {}
    spans_old: dict[str, list[int]] = {}
    for r in records:
        text = r["full_text"]
        new = [(f.start, f.end) for f in pii.findings(text)]
        old = [(s.start, s.end) for s in old_redaction.find_sensitive(text)]
        old += [(f.start, f.end) for f in old_check.find_card_numbers(text)]
        old += [(f.start, f.end) for f in old_check.find_ssns(text)]
        for s in r["spans"]:
            kind = s["entity_type"]
            if kind in ("CREDIT_CARD", "US_SSN"):
                continue
            a, b = s["start_position"], s["end_position"]
            if not re.search(r"\d", s["entity_value"]):
                continue
            for found, into in ((new, spans_new), (old, spans_old)):
                touched = any(x < b and a < y for x, y in found)
                total = into.setdefault(kind, [0, 0])
                total[0] += touched
                total[1] += 1
    return {
        "presidio_non_card_spans_with_digits_touched": {
            k: {"new": f"{spans_new[k][0]}/{spans_new[k][1]}", "old": f"{spans_old[k][0]}/{v[1]}"}
            for k, v in sorted(spans_old.items())
        }
    }


def sgd() -> tuple[dict[str, Any], list[str]]:
    turns = [json.loads(line) for line in SGD.read_text(encoding="utf-8").splitlines()]
    agent = [t["utterance"] for t in turns if t["speaker"] == "SYSTEM"]
    with_digits = [t for t in agent if re.search(r"\d", t)]
    new_fp = sum(bool([f for f in pii.findings(t) if f.kind in MASK]) for t in agent)
    old_fp = sum(
        bool(old_redaction.find_sensitive(t)) or old_finds("card_number", t) or old_finds("ssn", t)
        for t in agent
    )
    window_changed = kept_amounts = amounts = 0
    for text in agent:
        window = pii.RedactionWindow()
        stored = window.push(TurnText(0, "agent", text, 0.0, 1000.0))
        window_changed += stored != text
        money = re.findall(r"\$[\d,]+(?:\.\d+)?", text)
        amounts += len(money)
        kept_amounts += sum(m in stored for m in money)
    return {
        "sgd_agent_turns": len(agent),
        "sgd_agent_turns_with_digits": len(with_digits),
        "sgd_turns_with_a_card_ssn_cvv_found": {"new": new_fp, "old": old_fp},
        "sgd_turns_changed_by_the_window": window_changed,
        "sgd_dollar_amounts_kept_readable": f"{kept_amounts}/{amounts}",
    }, agent


def sequences(n: int) -> dict[str, Any]:
    rng = random.Random(11)
    completed = 0
    worst = 0
    for _ in range(n):
        number = forms.random_card(rng) if rng.random() < 0.7 else forms.random_ssn(rng)
        cuts = sorted(rng.sample(range(1, len(number)), rng.randint(1, 6)))
        bounds = [0, *cuts, len(number)]
        pieces = [number[a:b] for a, b in itertools.pairwise(bounds)]
        if len(number) == 9:
            pieces = [number[:3], number[3:5], number[5:]]
        window, previous, at = pii.RedactionWindow(), (), 0.0
        stored, last_found = [], False
        for k, piece in enumerate(pieces):
            form = rng.choice([f for f in forms.FORMS if f not in ("sentence_split", "digits_run")])
            text = forms.speak(piece, form, rng, (len(piece),))
            timed = pii.TimedText(text, at, at + 700)
            found = pii.sequence_findings(previous, timed)
            last_found = bool(found) if k == len(pieces) - 1 else last_found
            previous = pii.carry(previous, timed, 15_000)
            stored.append(window.push(TurnText(k, "customer", text, at, at + 700)))
            at += 700 + rng.uniform(200, 4000)
        completed += last_found
        worst = max(worst, len(readable(" ".join(stored))))
    return {
        "sequences_read_in_pieces": n,
        "completed_by_the_check_on_the_last_piece": round(completed / n, 4),
        "most_digits_left_readable_in_stored_texts": worst,
    }


def _pass(fn: Callable[[str], object], texts: list[str]) -> float:
    parse.cache_clear()
    detect._findings.cache_clear()
    start = time.perf_counter()
    for t in texts:
        fn(t)
    return (time.perf_counter() - start) / len(texts) * 1e6


def cost(agent: list[str], passes: int = 9) -> dict[str, Any]:
    """Median µs per turn; the contenders take turns within each pass, so a busy machine
    slows them alike."""
    rng = random.Random(5)
    numbers = [generated("card_number", rng.choice(forms.FORMS), rng)[1] for _ in range(300)]
    texts = agent[:1700] + numbers

    def old(t: str) -> None:
        old_check.run_check("card_number", t)
        old_check.run_check("ssn", t)
        old_redaction.redact(t)

    def new(t: str) -> None:
        pii.check("card_number", t)
        pii.redact(t)

    def new_window(t: str) -> None:
        pii.RedactionWindow().push(TurnText(0, "agent", t, 0.0, 1.0))

    contenders = {
        "old_check_plus_redaction": old,
        "new_check_plus_redaction": new,
        "new_window_push": new_window,
        "new_redact_only": pii.redact,
    }
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(passes):
        for name, fn in contenders.items():
            runs[name].append(_pass(fn, texts))
    out: dict[str, Any] = {"turns": len(texts), "passes": passes}
    out.update({name: round(statistics.median(v), 1) for name, v in runs.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="numbers per (kind, form)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {"n_per_form": args.n}
    result.update(recall(args.n))
    result.update(presidio())
    sgd_figures, agent = sgd()
    result.update(sgd_figures)
    result.update(sequences(args.n * 3))
    result["cost_us_per_turn"] = cost(agent)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
