"""Measure the evidence room: redaction quality/speed, ledger write/verify speed.

    .venv/bin/python scripts/evidence_bench.py [--presidio PATH] [--pg URL]

Redaction quality runs on the presidio sample (``tests/data/presidio_pii_subset.json`` by
default, or the full ``synth_pii_first1000.json``): recall of CREDIT_CARD / US_SSN written
and read aloud, and how many other entities are touched. Then false positives on pairs of
phone numbers read in one breath, redaction time per turn, and ledger throughput on SQLite
(and PostgreSQL when ``--pg`` names a database URL that may be written to).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from cxguard.evidence import EvidenceLedger
from cxguard.model import TurnText, Verdict
from cxguard.pii import findings as find_sensitive
from cxguard.pii import redact

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def speak(digits: str, rng: random.Random) -> str:
    out = []
    for i, d in enumerate(digits):
        if i and i % 4 == 0:
            out[-1] += ","
        out.append(d if rng.random() < 0.15 else ("oh" if d == "0" else WORDS[int(d)]))
    return " ".join(out)


def quality(path: Path) -> None:
    records = json.loads(path.read_text(encoding="utf-8"))
    rng = random.Random(1)
    gold, written, spoken, other, touched = Counter(), Counter(), Counter(), Counter(), Counter()
    for r in records:
        text, found = r["full_text"], find_sensitive(r["full_text"])
        for s in r["spans"]:
            kind, a, b = s["entity_type"], s["start_position"], s["end_position"]
            if kind in ("CREDIT_CARD", "US_SSN"):
                gold[kind] += 1
                written[kind] += any(f.start <= a and f.end >= b for f in found)
                said = speak(re.sub(r"\D", "", s["entity_value"]), rng)
                new = text[:a] + said + text[b:]
                spans = find_sensitive(new)
                spoken[kind] += any(f.start <= a and f.end >= a + len(said) for f in spans)
            else:
                other[kind] += 1
                touched[kind] += any(f.start < b and f.end > a for f in found)
    for k in gold:
        print(f"{k}: written recall {written[k]}/{gold[k]}, spoken recall {spoken[k]}/{gold[k]}")
    for k in sorted(other):
        if k in ("PHONE_NUMBER", "DATE_TIME", "ZIP_CODE", "AGE", "IBAN_CODE") or touched[k]:
            print(f"  {k}: touched {touched[k]}/{other[k]}")


def phone_pairs(n: int = 2000) -> None:
    rng = random.Random(2)

    def phone() -> str:
        return f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"

    single = sum("[" in redact(f"call me on {phone()} please") for _ in range(n))
    pair = sum("[" in redact(f"call {phone()}, or {phone()}") for _ in range(n))
    joined = sum("[" in redact(f"call {phone()}, {phone()}") for _ in range(n))
    print(f"phone numbers redacted: single {single}/{n}, 'A, or B' {pair}/{n}, 'A, B' {joined}/{n}")


def speed() -> None:
    turns = [
        "Thank you for calling, how can I help you today?",
        "Sure, my card number is four one one one, one one one one, one one one one, one one one"
        " one.",
        "The security code is 123 and my social is 123-45-6789.",
        "I'd like to pay $1,234.56 on 12/05/2024, call me on 905-674-3793.",
    ] * 250
    t0 = time.perf_counter()
    for t in turns:
        redact(t)
    per = (time.perf_counter() - t0) / len(turns) * 1e6
    print(f"redact: {per:.0f} µs per turn (mean of {len(turns)}, mixed turns)")


def ledger_speed(url: str, label: str) -> None:
    with EvidenceLedger(url) as led:
        batches = []
        for c in range(20):
            for t in range(25):
                led.write_turn(f"C{c}", "acme", TurnText(t, "agent", "a turn of text", t, t + 1))
                batch = [
                    Verdict(f"C{c}", "acme", t, "agent", t, t + 1, "text", f"a{k}", "pass", "e")
                    for k in range(8)
                ]
                t0 = time.perf_counter()
                led.write_verdicts(batch)
                batches.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = led.verify()
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = sum(1 for _ in led.export())
        export_s = time.perf_counter() - t0
    med = statistics.median(batches) * 1e3
    p95 = sorted(batches)[int(len(batches) * 0.95)] * 1e3
    print(
        f"{label}: write_verdicts(8) median {med:.1f} ms p95 {p95:.1f} ms; "
        f"verify {report.rows_checked} rows in {verify_s:.2f} s ({report.ok}); "
        f"export {rows} rows in {export_s:.2f} s"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    here = Path(__file__).resolve().parents[1]
    p.add_argument("--presidio", type=Path, default=here / "tests/data/presidio_pii_subset.json")
    p.add_argument("--pg", help="PostgreSQL URL of a scratch database")
    a = p.parse_args()
    quality(a.presidio)
    phone_pairs()
    speed()
    with tempfile.TemporaryDirectory() as d:
        ledger_speed(f"sqlite:///{d}/bench.db", "sqlite")
    if a.pg:
        ledger_speed(a.pg, "postgresql")


if __name__ == "__main__":
    main()
