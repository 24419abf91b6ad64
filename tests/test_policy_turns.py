"""Speaker turns from segments (``policy.turns``): floor changes, silences, backchannels,
overlap, deferred events — and, over random calls, that no segment is ever lost."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.model import Speaker
from cxguard.policy.turns import (
    BackchannelHeard,
    EventReleased,
    HeardSegment,
    Output,
    TurnAssembler,
    TurnEnded,
    TurnGrew,
    TurnOptions,
    is_backchannel,
)


class Feed:
    """Segments on a timeline, each preceded by a tick at its start (the speaker is heard)."""

    def __init__(self, **options: float) -> None:
        self.turns: TurnAssembler[str] = TurnAssembler(TurnOptions(**options))
        self.out: list[Output[str]] = []
        self.n = 0

    def say(
        self, speaker: Speaker, start: float, end: float, text: str = "words here", **kw: Any
    ) -> list[Output[str]]:
        got = self.turns.tick(start, {speaker: start})
        got += self.turns.segment(HeardSegment(self.n, speaker, start, end, text, **kw))
        self.n += 1
        self.out += got
        return got

    def tick(self, at: float, **speaking: float) -> list[Output[str]]:
        got = self.turns.tick(at, speaking)  # type: ignore[arg-type]
        self.out += got
        return got

    def ended(self) -> list[TurnEnded]:
        return [o for o in self.out if isinstance(o, TurnEnded)]


def _texts(feed: Feed) -> list[tuple[int, str, str, str]]:
    return [(e.turn.index, e.turn.speaker, e.turn.text, e.reason) for e in feed.ended()]


def test_a_greeting_split_by_a_pause_is_one_turn() -> None:
    feed = Feed()
    feed.say("agent", 500, 1100, "Hello.")
    grew = feed.say("agent", 1900, 5200, "I'm the automated assistant. How can I help?")
    assert [type(o) for o in grew] == [TurnGrew]
    assert isinstance(grew[0], TurnGrew) and grew[0].turn.index == 0
    feed.say("customer", 6000, 8000, "I have a question about my bill.")
    assert _texts(feed) == [
        (0, "agent", "Hello. I'm the automated assistant. How can I help?", "floor")
    ]
    turn = feed.ended()[0].turn
    assert [s.index for s in turn.segments] == [0, 1]
    assert (turn.start_ms, turn.end_ms) == (500, 5200)


def test_a_long_silence_ends_the_turn_and_the_same_speaker_opens_a_new_one() -> None:
    feed = Feed(end_silence_ms=1500)
    feed.say("agent", 0, 1000, "Let me check that.")
    assert feed.tick(2400) == []
    assert feed.tick(2600, agent=2450) == []  # speaking again before the deadline of 2.5 s
    assert feed.turns.open_turn == 0
    feed.tick(2700)  # that speech came to nothing (a blip): silent from 1.0 s to 2.7 s
    assert _texts(feed) == [(0, "agent", "Let me check that.", "silence")]
    feed.say("agent", 4000, 5000, "Your balance is fifty dollars.")
    assert feed.turns.open_turn == 1


def test_silence_is_measured_on_the_turns_speaker_only() -> None:
    feed = Feed(end_silence_ms=1500)
    feed.say("agent", 0, 1000, "How can I help?")
    feed.tick(2000, customer=1300)  # the customer is talking, the agent is not
    assert _texts(feed) == []
    feed.tick(2500, customer=1300)
    assert _texts(feed) == [(0, "agent", "How can I help?", "silence")]


def test_a_backchannel_under_the_agent_does_not_end_its_turn_and_is_reported() -> None:
    feed = Feed()
    feed.say("agent", 0, 3000, "Your bill went up because of the weather,")
    assert feed.say("customer", 2500, 2900, "Mm-hm.") == []  # held
    got = feed.say("agent", 3400, 6000, "and the rate changed in January.")
    assert [type(o) for o in got] == [BackchannelHeard, TurnGrew]
    heard = got[0]
    assert isinstance(heard, BackchannelHeard)
    assert (heard.turn_index, heard.segment.text, heard.segment.index) == (0, "Mm-hm.", 1)
    feed.say("customer", 7000, 9000, "Why did the rate change?")
    ended = feed.ended()[0]
    assert ended.turn.text.endswith("the rate changed in January.")
    assert [s.index for s in ended.turn.segments] == [0, 2]
    assert [b.text for b in ended.backchannels] == ["Mm-hm."]


def test_held_words_join_the_other_speakers_turn_when_they_go_on() -> None:
    feed = Feed()
    feed.say("agent", 0, 2000, "Would you like me to set that up?")
    feed.say("customer", 2300, 2700, "Okay.")
    feed.say("customer", 3000, 5000, "And can I pay by card?")
    assert _texts(feed) == [(0, "agent", "Would you like me to set that up?", "floor")]
    feed.out += feed.turns.finish()
    assert _texts(feed)[1] == (1, "customer", "Okay. And can I pay by card?", "end")


def test_held_words_become_a_turn_when_the_turn_ends_by_silence() -> None:
    feed = Feed(end_silence_ms=1500)
    feed.say("agent", 0, 2000, "Shall I go ahead?")
    feed.say("customer", 2300, 2700, "Yes.")
    feed.tick(3400)
    assert _texts(feed) == []
    feed.tick(3600)
    assert [t[:3] for t in _texts(feed)] == [(0, "agent", "Shall I go ahead?")]
    assert feed.turns.open_turn == 1
    feed.tick(4300)
    assert [t[:3] for t in _texts(feed)] == [
        (0, "agent", "Shall I go ahead?"),
        (1, "customer", "Yes."),
    ]


def test_unreadable_or_long_or_wordy_segments_take_the_floor() -> None:
    for kw in (
        {"text": "", "undetermined_reason": "asr_failed"},
        {"text": "okay", "partial": True},
        {"text": "okay okay okay okay"},
        {"text": "no"},
    ):
        feed = Feed()
        feed.say("agent", 0, 2000, "Anything else?")
        feed.say("customer", 2300, 2700, **kw)
        assert [e.reason for e in feed.ended()] == ["floor"], kw
    feed = Feed()
    feed.say("agent", 0, 2000, "Anything else?")
    feed.say("customer", 2300, 4000, "yeah")  # 1.7 s: too long to be a backchannel
    assert len(feed.ended()) == 1
    feed = Feed()
    feed.say("agent", 0, 2000, "Anything else?")
    feed.say("customer", 2300, 2700, "")  # a cough: no words at all
    assert feed.ended() == []


def test_overlapping_speech_is_taken_in_the_order_it_closed() -> None:
    feed = Feed()
    feed.say("agent", 0, 2000, "First part.")
    feed.tick(2500, agent=2400)
    # The customer talks over the agent's second segment, which closes later.
    feed.say("customer", 2600, 5000, "Sorry, I need to close my account.")
    feed.say("agent", 2400, 5500, "Second part.")
    feed.turns.finish()
    ends = [(e.turn.index, e.turn.speaker, e.turn.text) for e in feed.ended()]
    assert ends == [
        (0, "agent", "First part."),
        (1, "customer", "Sorry, I need to close my account."),
    ]


def test_a_turn_at_its_maximum_length_ends_and_the_speaker_goes_on_in_a_new_one() -> None:
    feed = Feed(max_turn_ms=5000)
    feed.say("agent", 0, 2500, "one")
    got = feed.say("agent", 2600, 5100, "two")
    assert [type(o) for o in got] == [TurnEnded]
    feed.say("customer", 5200, 5500, "mm-hm")
    feed.say("agent", 5600, 7000, "three")
    heard = [o for o in feed.out if isinstance(o, BackchannelHeard)]
    assert [(h.turn_index, h.segment.text) for h in heard] == [(1, "mm-hm")]
    assert [(e.turn.text, e.reason) for e in feed.ended()] == [("one two", "max_length")]


def test_events_wait_for_the_turn_being_spoken() -> None:
    turns: TurnAssembler[str] = TurnAssembler()
    assert turns.defer("before") == [EventReleased("before")]
    turns.segment(HeardSegment(0, "agent", 0, 1000, "Hello"))
    assert turns.defer("during") == []
    out = turns.segment(HeardSegment(1, "customer", 1500, 3000, "I want to pay my bill"))
    assert [type(o) for o in out] == [TurnEnded, EventReleased, TurnGrew]
    assert turns.defer("during customer") == []
    assert [type(o) for o in turns.finish()] == [TurnEnded, EventReleased]


def test_settled_time_accounts_for_speech_not_yet_judged() -> None:
    turns: TurnAssembler[str] = TurnAssembler()
    turns.segment(HeardSegment(0, "customer", 0, 1000, "close my account"))
    turns.tick(1200, {"agent": 1100})
    assert turns.settled_ms("agent") == 1100 and turns.settled_ms("customer") == 0
    turns.segment(HeardSegment(1, "agent", 1100, 1400, "okay"))  # held as a backchannel
    turns.tick(1500, {})
    assert turns.settled_ms("agent") == 1100
    turns.tick(2600, {})  # the customer's turn ends by silence; "okay" becomes the agent's
    assert turns.settled_ms("agent") == 1100 and turns.open_turn == 1
    turns.tick(3000, {})  # and ends by silence too
    assert turns.settled_ms("agent") == 3000 and turns.open_turn is None


def test_backchannel_words() -> None:
    for text in ("Mm-hm.", "Okay.", "Yeah, right.", "uh-huh", "I see.", "All right.", "Mhm"):
        assert is_backchannel(text), text
    for text in ("", "No.", "Okay, cancel it.", "Thanks.", "yes yes yes yes", "I see a fee"):
        assert not is_backchannel(text), text


# --------------------------------------------------------------------------- random calls

_WORDS = ["okay", "mm-hm", "", "close my account", "yes", "the bill is high"]


@st.composite
def _calls(draw: st.DrawFn) -> list[tuple[str, Any]]:
    steps: list[tuple[str, Any]] = []
    at = {"agent": 0.0, "customer": 0.0}
    for index in range(draw(st.integers(0, 14))):
        speaker: Speaker = draw(st.sampled_from(["agent", "customer"]))
        start = at[speaker] + draw(st.floats(50, 3000))
        end = start + draw(st.floats(100, 4000))
        at[speaker] = end
        text = draw(st.sampled_from(_WORDS))
        unreadable = draw(st.booleans()) and draw(st.booleans())
        seg = HeardSegment(index, speaker, start, end, text, "asr" if unreadable else None)
        if draw(st.booleans()):
            steps.append(("tick", (start, {speaker: start})))
        steps.append(("segment", seg))
        if draw(st.booleans()):
            steps.append(("event", f"e{index}"))
        if draw(st.booleans()):
            steps.append(("tick", (end + draw(st.floats(0, 3000)), {})))
    return steps


@settings(max_examples=300, deadline=None)
@given(_calls(), st.floats(300, 3000), st.floats(2000, 20000))
def test_every_segment_lands_in_exactly_one_turn_or_backchannel(
    steps: list[tuple[str, Any]], end_silence: float, max_turn: float
) -> None:
    turns: TurnAssembler[str] = TurnAssembler(
        TurnOptions(end_silence_ms=end_silence, max_turn_ms=max_turn)
    )
    out: list[Output[str]] = []
    segments, events = [], []
    for kind, arg in steps:
        if kind == "segment":
            segments.append(arg)
            out += turns.segment(arg)
        elif kind == "tick":
            out += turns.tick(*arg)
        else:
            events.append(arg)
            out += turns.defer(arg)
    out += turns.finish()
    ended = [o.turn for o in out if isinstance(o, TurnEnded)]
    in_turns = [s.index for t in ended for s in t.segments]
    heard = [o.segment.index for o in out if isinstance(o, BackchannelHeard)]
    assert sorted(in_turns + heard) == [s.index for s in segments]
    assert [t.index for t in ended] == list(range(len(ended)))
    by_index = {s.index: s for s in segments}
    for t in ended:
        assert {by_index[s.index].speaker for s in t.segments} == {t.speaker}
        assert [s.index for s in t.segments] == sorted(s.index for s in t.segments)
    final = {t.index: t for t in ended}
    for o in out:
        if isinstance(o, TurnGrew):
            assert o.turn.index in final and o.turn.speaker == final[o.turn.index].speaker
    assert [o.event for o in out if isinstance(o, EventReleased)] == events
    assert turns.open_turn is None


def test_long_speech_of_the_other_speaker_takes_the_floor_before_its_segment_closes() -> None:
    # The pyannote sample's opening: "Hello?" / "Hello?" / the agent talks over the
    # customer's "Neither did I.", its one long segment closing last.
    feed = Feed(end_silence_ms=1500, backchannel_max_ms=1500)
    feed.say("customer", 7520, 8480, "Hello?")
    feed.tick(9000, agent=8320)
    assert feed.ended() == []
    feed.tick(9900, agent=8320, customer=9860)  # the agent has talked 1.6 s: not listening
    assert [e.reason for e in feed.ended()] == ["floor"]
    feed.out += feed.turns.segment(HeardSegment(9, "customer", 9860, 11200, "Neither did I."))
    feed.out += feed.turns.segment(HeardSegment(10, "agent", 8320, 14860, "Oh, hello ..."))
    feed.out += feed.turns.finish()
    assert [(e.turn.speaker, e.turn.text) for e in feed.ended()] == [
        ("customer", "Hello?"),
        ("customer", "Neither did I."),
        ("agent", "Oh, hello ..."),
    ]
