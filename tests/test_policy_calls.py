"""A call judged from its segments (``policy.calls``): the unit is the speaker turn, mid-turn
prohibitions come early and once, obligations fail on the turn that used them up after the
handoff grace, and a part of evaluation that raises does not stop the call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from test_policy_support import pack

from cxguard.model import ControlEvent, Speaker
from cxguard.policy.calls import Backchannel, CallJudge, Decided, Early, Failed, Judged
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.pack import default_pack_path, load_pack
from cxguard.policy.turns import HeardSegment, TurnOptions

RULES = default_pack_path().with_name("billing-rules.yaml")
DISCLOSURE = "disclosure.ai_identifies"
CLOSURE = "billing.closure_escalation"
PROMISE = "commitments.no_unauthorized_promises"


class Call:
    def __init__(self, engine: PolicyEngine, **options: float) -> None:
        self.judge = CallJudge(engine, {"authenticated": "false"}, TurnOptions(**options))
        self.out: list[object] = []
        self.n = 0

    def say(self, speaker: Speaker, start: float, end: float, text: str, **kw: object) -> None:
        self.out += self.judge.tick(start, {speaker: start})
        seg = HeardSegment(self.n, speaker, start, end, text, **kw)  # type: ignore[arg-type]
        self.out += self.judge.segment(seg)
        self.n += 1

    def judged(self, speaker: Speaker | None = None) -> list[Judged]:
        return [o for o in self.out if isinstance(o, Judged) and speaker in (None, o.turn.speaker)]

    def outcome(self, turn: int, assertion: str) -> str:
        for o in self.out:
            results = o.results if isinstance(o, Judged | Decided) else ()
            for r in results:
                if (r.turn_index, r.assertion_id) == (turn, assertion):
                    return r.outcome
        raise KeyError((turn, assertion))


def test_a_greeting_split_by_a_pause_discloses_on_the_first_agent_turn() -> None:
    engine = PolicyEngine(load_pack(RULES))
    for pause in (600, 750, 900):
        call = Call(engine)
        call.say("agent", 500, 1100, "Hello.")
        call.say("agent", 1100 + pause, 4800, "I'm the automated assistant for Northwind.")
        call.say("customer", 5600, 7500, "Hi, why is my bill so high?")
        first = call.judged("agent")[0]
        assert first.turn.text == "Hello. I'm the automated assistant for Northwind."
        assert call.outcome(0, DISCLOSURE) == "pass"
    # Judged segment by segment (what the VAD cuts), the same call failed disclosure.
    call = Call(engine, end_silence_ms=0)
    call.say("agent", 500, 1100, "Hello.")
    call.say("agent", 1850, 4800, "I'm the automated assistant for Northwind.")
    assert call.outcome(0, DISCLOSURE) == "fail"


def test_a_prohibition_is_reported_mid_turn_once_and_the_turn_is_judged_at_its_end() -> None:
    call = Call(PolicyEngine(load_pack(RULES)))
    call.say("agent", 0, 2000, "Hi, I'm a virtual assistant.")
    call.say("customer", 2500, 4000, "Can you take the late fee off?")
    call.say("agent", 4500, 7000, "I guarantee the fee will be removed.")
    early = [o for o in call.out if isinstance(o, Early)]
    assert [(e.turn.index, [r.assertion_id for r in e.results]) for e in early] == [(2, [PROMISE])]
    call.say("agent", 7600, 9000, "I guarantee it, truly.")  # the same turn goes on
    assert len([o for o in call.out if isinstance(o, Early)]) == 1
    call.say("customer", 9500, 10500, "Great, thanks.")
    judged = call.judged("agent")[1]
    assert judged.alerted_early == {PROMISE}
    assert call.outcome(2, PROMISE) == "fail"
    assert [s.index for s in judged.turn.segments] == [2, 3]


def test_backchannels_are_reported_not_judged() -> None:
    call = Call(PolicyEngine(load_pack(RULES)))
    call.say("agent", 0, 3000, "Hi, I'm a virtual assistant, and your bill went up,")
    call.say("customer", 2600, 3000, "Mm-hm.")
    call.say("agent", 3500, 6000, "because of the cold weather.")
    call.out += call.judge.finish(7000)
    heard = [o for o in call.out if isinstance(o, Backchannel)]
    assert [(b.turn_index, b.segment.text) for b in heard] == [(0, "Mm-hm.")]
    assert [j.turn.index for j in call.judged()] == [0]


def test_the_turn_that_used_up_an_obligation_fails_after_the_grace_unless_handed_off() -> None:
    engine = PolicyEngine(load_pack(RULES))
    for handoff_at, outcome in ((None, "fail"), (9_500.0, "pass"), (10_500.0, "fail")):
        call = Call(engine, handoff_grace_ms=2000)
        call.say("agent", 0, 2000, "Hi, I'm a virtual assistant.")
        call.say("customer", 2500, 4500, "I want to close my account.")
        call.say("agent", 5000, 8000, "I'm sorry to hear that, can I ask why?")
        call.say("customer", 8500, 9200, "It's too expensive.")
        judged = call.judged("agent")[1]
        assert CLOSURE not in {r.assertion_id for r in judged.results}  # held for the grace
        if handoff_at is not None:
            call.out += call.judge.tick(handoff_at, {})
            call.out += call.judge.event(ControlEvent("handoff", handoff_at))
        call.out += call.judge.tick(10_100, {"customer": 9900})
        decided = [r for o in call.out if isinstance(o, Decided) for r in o.results]
        assert [(r.turn_index, r.trigger_turn, r.outcome) for r in decided] == [(2, 1, outcome)]


def test_a_state_event_applies_after_the_turn_being_spoken() -> None:
    call = Call(PolicyEngine(load_pack(RULES)))
    call.say("agent", 0, 2000, "Hi, I'm a virtual assistant.")
    call.say("customer", 2500, 4500, "I can't pay the whole bill.")
    call.say("agent", 5000, 7000, "We can set up a payment plan.")
    assert call.judge.event(ControlEvent("authenticated", 7100)) == []  # waits
    call.say("customer", 7500, 8500, "Great.")
    assert call.outcome(2, "billing.no_payment_arrangements_unauthenticated") == "fail"
    call.say("agent", 9000, 11000, "You can pay in installments.")
    call.out += call.judge.finish(12000)
    assert call.outcome(4, "billing.no_payment_arrangements_unauthenticated") == "not_applicable"


class BrokenScorer:
    """Raises a plain RuntimeError (not a ClassifierError) on one phrase, as a bug would."""

    model_ids: Mapping[str, str] = {"broken": "1"}

    def labels(self, speaker: Speaker) -> Sequence[str]:
        return ["agent.bad"] if speaker == "agent" else []

    def score(self, texts: Sequence[str], speaker: Speaker) -> list[Mapping[str, float]]:
        if any("explode" in t for t in texts):
            raise RuntimeError("tokenizer index out of range")
        return [{"agent.bad": 0.0} for _ in texts]


BAD = """
assertions:
  - {id: no.bad, kind: classifier, negate: true, label: agent.bad, threshold: 0.5}
  - {id: no.guarantee, kind: contains, negate: true, phrases: [guarantee]}
"""


def test_an_evaluation_that_raises_gives_undetermined_and_the_call_goes_on() -> None:
    call = Call(PolicyEngine(pack(BAD), BrokenScorer()))  # type: ignore[arg-type]
    call.say("agent", 0, 1000, "hello")
    call.say("customer", 1500, 2500, "hi")
    call.say("agent", 3000, 4000, "watch this explode")
    call.say("customer", 4500, 5500, "what?")
    call.say("agent", 6000, 7000, "I guarantee it")
    call.out += call.judge.finish(8000)
    failed = [o for o in call.out if isinstance(o, Failed)]
    assert [(f.stage, f.turn_index) for f in failed] == [
        ("evaluate", 2)
    ]  # no sentence end yet: no preview
    assert failed[0].error.startswith("RuntimeError: tokenizer index out of range")
    assert call.outcome(2, "no.bad") == "undetermined"
    assert call.outcome(2, "no.guarantee") == "undetermined"
    assert "policy evaluation failed (RuntimeError)" in next(
        r.evidence for j in call.judged() for r in j.results if r.turn_index == 2
    )
    assert call.outcome(4, "no.guarantee") == "fail"  # later turns judged as usual
    assert call.outcome(4, "no.bad") == "pass"


def test_a_partly_heard_agent_turn_fails_the_prohibitions_its_words_break() -> None:
    call = Call(PolicyEngine(load_pack(RULES)))
    call.say("agent", 0, 2000, "Hi, I'm a virtual assistant.")
    call.say("customer", 2500, 4500, "Will I get a refund?")
    call.say("agent", 5000, 5400, "", undetermined_reason="low log-probability")
    call.say("agent", 5900, 8000, "I guarantee you will get a full refund.")
    call.out += call.judge.finish(9000)
    judged = call.judged("agent")[1]
    assert judged.turn.undetermined_reason == "segment 2 of the turn: low log-probability"
    by_id = {r.assertion_id: r for r in judged.results}
    assert by_id[PROMISE].outcome == "fail" and "in the words heard" in by_id[PROMISE].evidence
    assert by_id["pii.no_full_card_number"].outcome == "undetermined"
