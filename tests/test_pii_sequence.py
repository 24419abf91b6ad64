"""Numbers read across segments and turns of one speaker: the check fails on the turn that
completes them, and the stored texts of a call never hold them in clear."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from test_policy_support import Turns, pack

from cxguard import pii
from cxguard.model import Speaker, TurnText
from cxguard.pii import forms
from cxguard.pii.text import parse
from cxguard.policy.engine import PolicyEngine

PII_PACK = """
assertions:
  - id: pii.none
    kind: check
    negate: true
    severity: critical
    checks: [card_number, ssn, cvv]
"""


def _outcomes(engine: PolicyEngine, script: list[tuple[Speaker, str, float]]) -> list[str]:
    """The pii.none outcome of each agent turn (start times in seconds)."""
    call, turn, out = engine.start(), Turns(), []
    for speaker, text, at in script:
        results = call.evaluate(turn(speaker, text, start_ms=at * 1000, length_ms=800))
        out += [f"{r.outcome}:{r.evidence}" for r in results if r.assertion_id == "pii.none"]
    return out


def test_the_check_fails_on_the_turn_that_completes_a_card() -> None:
    got = _outcomes(
        PolicyEngine(pack(PII_PACK)),
        [
            ("agent", "The card on file is four one one one", 0),
            ("customer", "mm-hm", 1.5),
            ("agent", "one one one one", 2),
            ("customer", "okay", 3.2),
            ("agent", "uh, one one one one, one one one one. Is that right?", 4),
        ],
    )
    assert [g.split(":")[0] for g in got] == ["pass", "pass", "fail"]
    assert "ending 1111 (16 digits, Luhn-valid" in got[2]
    assert "read across 3 segments/turns" in got[2]


def test_ssns_and_mixed_forms_across_turns() -> None:
    got = _outcomes(
        PolicyEngine(pack(PII_PACK)),
        [
            ("agent", "Let me read your social back: oh seven eight", 0),
            ("agent", "oh five", 1.5),
            ("agent", "1 1 2 oh.", 3),
        ],
    )
    assert [g.split(":")[0] for g in got] == ["pass", "pass", "fail"]
    assert "SSN" in got[2]


def test_a_pause_longer_than_the_window_or_other_words_break_the_chain() -> None:
    script: list[tuple[Speaker, str, float]] = [
        ("agent", "four one one one, one one one one", 0),
        ("agent", "one one one one, one one one one", 20),
    ]
    assert [g.split(":")[0] for g in _outcomes(PolicyEngine(pack(PII_PACK)), script)] == [
        "pass",
        "pass",
    ]
    wide = PolicyEngine(pack(PII_PACK), pii_options=pii.PiiOptions(window_ms=30_000))
    assert [g.split(":")[0] for g in _outcomes(wide, script)] == ["pass", "fail"]
    hemmed: list[tuple[Speaker, str, float]] = [
        ("agent", "four one one one, one one one one is the start of your reference", 0),
        ("agent", "one one one one, one one one one", 1.5),
    ]
    assert [g.split(":")[0] for g in _outcomes(PolicyEngine(pack(PII_PACK)), hemmed)] == [
        "pass",
        "pass",
    ]


def test_the_other_speaker_and_digit_free_turns_do_not_break_it() -> None:
    got = _outcomes(
        PolicyEngine(pack(PII_PACK)),
        [
            ("agent", "4111", 0),
            ("customer", "one two three four", 1),  # the customer's digits are their own
            ("agent", "sorry, let me find it", 2),
            ("agent", "1111-1111", 4),
            ("agent", "1111.", 6),
        ],
    )
    assert [g.split(":")[0] for g in got] == ["pass", "pass", "pass", "fail"]


def test_the_engine_state_keeps_only_digit_bearing_text_and_preview_keeps_it() -> None:
    engine = PolicyEngine(pack(PII_PACK))
    call, turn = engine.start(), Turns()
    call.evaluate(turn("agent", "Hello, how can I help?"))
    assert call.state.recent_digits.get("agent", ()) == ()
    call.evaluate(turn("agent", "It is four one one one"))
    kept = call.state.recent_digits["agent"]
    assert [t.text for t in kept] == ["It is four one one one"]
    before = call.state
    preview = turn("agent", "one one one one, one one one one, one one one one. And")
    assert [r.outcome for r in call.preview(preview)] == ["fail"]
    assert call.state == before


# --------------------------------------------------------------------------- pure API


def test_sequence_findings_and_carry() -> None:
    a = pii.TimedText("my card is 4111", 0, 1000)
    b = pii.TimedText("1111 1111", 2000, 3000)
    c = pii.TimedText("1111", 4000, 4500)
    kept = pii.carry(pii.carry((), a, 15_000), b, 15_000)
    assert [t.text for t in kept] == [a.text, b.text]
    (found,) = pii.sequence_findings(kept, c)
    assert (found.kind, found.start, found.end, found.pieces) == ("card_number", 0, 4, 3)
    assert pii.sequence_findings((), c) == []
    quiet = pii.TimedText("sure, just a moment", 5000, 6000)
    assert pii.carry(kept, quiet, 15_000) == kept  # digit-free: transparent
    late = pii.TimedText("thanks", 40_000, 41_000)
    assert pii.carry(kept, late, 15_000) == ()
    amount = pii.TimedText("that's $45.20", 5000, 6000)
    assert pii.carry(kept, amount, 15_000) == kept  # an amount is no piece of a number
    hemmed = pii.TimedText("1111 is all I have", 5000, 6000)
    assert pii.carry(kept, hemmed, 15_000) == ()


def test_window_masks_every_group_that_may_belong_to_a_sequence() -> None:
    window = pii.RedactionWindow()
    turn = Turns()
    stored = [
        window.push(turn("customer", "my card is four one", start_ms=0)),
        window.push(turn("agent", "mm-hm", start_ms=1500)),
        window.push(turn("customer", "one one", start_ms=2000)),
        window.push(turn("customer", "one one one one, 1 1 1 1", start_ms=3500)),
        window.push(turn("customer", "one one one one", start_ms=5000)),
        window.push(turn("agent", "Thanks. That's $45.20, due at 3 pm on June 5, in 30 days.")),
        window.push(turn("agent", "Your reference is 55 23")),
    ]
    assert stored == [
        "my card is four one",  # a first piece of 2 digits stays readable (at most 2)
        "mm-hm",
        "[DIGITS]",  # continues it: masked however short
        "[DIGITS]",
        "[CARD]",  # completes the card
        "Thanks. That's $45.20, due at 3 pm on June 5, in 30 days.",
        "Your reference is [DIGITS]",
    ]
    quote = 'pattern 1 matched "one one, one one one one" at chars 0-24'
    assert window.redact(quote) == 'pattern 1 matched "[DIGITS]" at chars 0-24'


def test_peek_does_not_move_the_window() -> None:
    window = pii.RedactionWindow()
    first = TurnText(0, "agent", "it's four one", 0, 900)
    window.push(first)
    so_far = TurnText(1, "agent", "one one", 1500, 2000)
    assert window.peek(so_far) == "[DIGITS]"
    assert window.peek(so_far) == "[DIGITS]"
    assert window.push(TurnText(1, "agent", "thank you", 1500, 2500)) == "thank you"


# --------------------------------------------------------------------------- the guarantee

BACKCHANNELS = ["mm-hm", "okay", "uh-huh", "yes", "go on", "sorry, just a moment"]
PIECE_TAILS = ["", ",", ".", " uh", " um,", "...", "?", " okay"]


def _pieces(number: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(number)), rng.randint(1, min(6, len(number) - 1))))
    bounds = [0, *cuts, len(number)]
    return [number[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    what=st.sampled_from(["card", "ssn"]),
    reader=st.sampled_from(["agent", "customer"]),
    lead=st.sampled_from(["", "my card is", "the number is", "sure, it's", "my social is"]),
    grouped=st.booleans(),
)
def test_no_seven_digits_of_a_number_read_in_pieces_can_be_put_back_together(
    seed: int, what: str, reader: Speaker, lead: str, grouped: bool
) -> None:
    rng = random.Random(seed)
    number = forms.random_card(rng) if what == "card" else forms.random_ssn(rng)
    other: Speaker = "customer" if reader == "agent" else "agent"
    window, turn = pii.RedactionWindow(), Turns()
    engine = PolicyEngine(pack(PII_PACK)).start()
    stored: list[str] = []
    verdicts: list[str] = []
    at = 0.0
    pieces = _pieces(number, rng)
    if what == "ssn" and grouped:  # read in its 3-2-4 groups
        pieces = [number[:3], number[3:5], number[5:]]
    for k, piece in enumerate(pieces):
        form = rng.choice([f for f in forms.FORMS if f not in ("sentence_split", "digits_run")])
        text = forms.speak(piece, form, rng, (len(piece),)) + rng.choice(PIECE_TAILS)
        if k == 0 and lead:
            text = f"{lead.replace('social', 'card') if what == 'card' else lead} {text}"
        said = turn(reader, text, start_ms=at, length_ms=700)
        stored.append(window.push(said))
        read = sum(len(p) for p in pieces[: k + 1])
        verdicts += [f"{r.outcome}@{read}" for r in engine.evaluate(said)]
        at += 700 + rng.uniform(200, 4000)
        if rng.random() < 0.5:
            chat = turn(other, rng.choice(BACKCHANNELS), start_ms=at, length_ms=400)
            stored.append(window.push(chat))
            engine.evaluate(chat)
            at += 400 + rng.uniform(100, 1000)
    everything = " ".join(stored)
    left = "".join(run.digits for run in parse(everything).runs)
    assert not any(number[i : i + 7] in left for i in range(len(number) - 6)), stored
    assert len(left) <= 2, stored  # only a first piece shorter than 3 digits stays
    an_ssn = grouped or "social" in lead
    if reader == "agent" and (what == "card" or an_ssn):
        # fails on the completing turn (or already on a card-shaped prefix)
        assert verdicts[-1].startswith("fail"), (stored, verdicts)
        first = next(int(v.split("@")[1]) for v in verdicts if v.startswith("fail"))
        assert first >= 9, (stored, verdicts)  # a card read 3-2-4 looks like an SSN at 9
