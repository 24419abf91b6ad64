"""One call's conversation with a policy pack: state, turns in order, verdicts (the engine's
per-call half; see ``policy.engine`` for the whole picture)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from cxguard import pii
from cxguard.errors import PolicyError
from cxguard.model import ControlEvent, Outcome, Speaker, TurnText
from cxguard.policy import readings
from cxguard.policy.matchers import TurnView, match
from cxguard.policy.preview import settled_text
from cxguard.policy.spec import AssertionSpec, TemporalAssertion, TextAssertion
from cxguard.policy.state import (
    CUSTOMER_TURNS_KEPT,
    ConversationState,
    Obligation,
    unmet_condition,
)
from cxguard.policy.temporal import (
    Decision,
    judge_agent_turn,
    on_deadline,
    on_finish,
    on_handoff,
    open_obligation,
    release,
)

if TYPE_CHECKING:
    from cxguard.policy.engine import PolicyEngine

_TRUE = frozenset({"true", "1", "yes", "y", "on"})


@dataclass(frozen=True)
class AssertionResult:
    assertion_id: str
    outcome: Outcome
    evidence: str
    severity: str
    actions: tuple[str, ...]
    """``on_fail`` for a failure, ``on_undetermined`` for an undetermined result, else ()."""
    scores: Mapping[str, float]
    turn_index: int
    """The turn judged; for a verdict decided after its turn, the turn it lands on: the agent
    turn that used up an obligation's window, else the trigger turn."""
    speaker: Speaker
    trigger_turn: int | None = None
    """For temporal assertions: the turn that opened the obligation this result closes."""
    intent: str | None = None
    """The caller intent of the conversation when the result was decided (drift is
    measured per intent); stamped by :class:`~cxguard.policy.calls.CallJudge`."""
    mode: Literal["live", "shadow"] = "live"
    """``shadow``: recorded, never alerted nor handed off (the assertion's ``mode``)."""


def check_event(event: ControlEvent) -> None:
    """Raise :class:`PolicyError` for a signal that cannot be applied."""
    if event.name == "intent" and not event.data.get("intent", "").strip():
        raise PolicyError(f"intent event at {event.at_ms} ms has no 'intent' value")


_READS = {"trigger": "its trigger", "intent": "the caller intent", "pending": "open obligations"}


class Conversation:
    """One call's state and verdicts. Not thread-safe: feed it from one task at a time."""

    def __init__(
        self, engine: PolicyEngine, parameters: Mapping[str, str], handoff_grace_ms: float = 0.0
    ) -> None:
        self._engine = engine
        self._pack = engine.pack
        self._grace_ms = handoff_grace_ms
        authenticated = parameters.get("authenticated", "").strip().lower() in _TRUE
        intent = parameters.get("intent") or self._pack.state.initial_intent
        source = "call parameter" if parameters.get("intent") else "pack default"
        self._state = ConversationState(
            authenticated=authenticated,
            auth_source="call parameter" if authenticated else "",
            intent=intent,
            intent_source=source if intent else "",
        )

    @property
    def state(self) -> ConversationState:
        return self._state

    # ------------------------------------------------------------------ events

    def observe(self, event: ControlEvent) -> list[AssertionResult]:
        """Apply a trusted signal. A ``handoff`` meets open obligations whose assertion allows
        it (and whose trigger turn began before it); their verdicts are returned. Unknown
        names are ignored."""
        self._open()
        check_event(event)
        st, at = self._state, f"{event.name} event at {event.at_ms / 1000:.1f} s"
        if event.name == "authenticated":
            self._state = replace(st, authenticated=True, auth_source=at)
        elif event.name == "unauthenticated":
            self._state = replace(st, authenticated=False, auth_source=at)
        elif event.name == "intent":
            intent = event.data.get("intent", "").strip()
            self._state = replace(st, intent=intent, intent_source=at)
        elif event.name == "handoff":
            results, still_open, still_held = [], [], []
            for obligation in (*st.pending, *st.held):
                spec = self._temporal(obligation.assertion_id)
                decision = None
                if spec.handoff_satisfies:
                    decision = on_handoff(obligation, event.at_ms)
                if decision is not None:
                    results.append(self._closing(spec, obligation, decision))
                elif obligation.exhausted is None:
                    still_open.append(obligation)
                else:
                    still_held.append(obligation)
            self._state = replace(
                st, pending=tuple(still_open), held=tuple(still_held), handoff_at_ms=event.at_ms
            )
            return results
        return []

    def advance(self, at_ms: float, agent_from_ms: float | None = None) -> list[AssertionResult]:
        """The stream reached ``at_ms`` (every event stamped before it has been observed), and
        no agent turn that starts before ``agent_from_ms`` (default ``at_ms``) is still to be
        evaluated. Releases held verdicts whose handoff grace ended before ``at_ms`` and fails
        obligations whose deadline passed before ``agent_from_ms``."""
        self._open()
        agent_from = at_ms if agent_from_ms is None else min(at_ms, agent_from_ms)
        st, results = self._state, []
        held = [o for o in st.held if o.exhausted is None or o.exhausted.due_ms >= at_ms]
        for obligation in st.held:
            if obligation not in held:
                assert obligation.exhausted is not None
                why = f"no handoff by {obligation.exhausted.due_ms / 1000:.1f} s"
                spec = self._temporal(obligation.assertion_id)
                results.append(self._closing(spec, obligation, release(obligation, why)))
        still_open = []
        for obligation in st.pending:
            decision = on_deadline(obligation, agent_from)
            if decision is None:
                still_open.append(obligation)
            else:
                spec = self._temporal(obligation.assertion_id)
                results.append(self._closing(spec, obligation, decision))
        if results:
            self._state = replace(st, pending=tuple(still_open), held=tuple(held))
        return results

    def finish(self, at_ms: float) -> list[AssertionResult]:
        """End the call: every obligation still open fails (or is undetermined if unreadable
        turns in its window might have met it); verdicts held for a handoff grace stand."""
        self._open()
        results = [
            self._closing(self._temporal(o.assertion_id), o, on_finish(o, at_ms))
            for o in (*self._state.pending, *self._state.held)
        ]
        self._state = replace(self._state, pending=(), held=(), finished=True)
        return results

    # ------------------------------------------------------------------ turns

    def evaluate(self, turn: TurnText) -> list[AssertionResult]:
        """Judge a whole turn and move the conversation on past it.

        A turn *partly* heard (``undetermined_reason`` set, some ``text``: one of its segments
        was unreadable) counts its heard words where they are certain: an agent turn fails the
        prohibitions they break (``undetermined`` otherwise); a customer turn's heard words set
        intent and open obligations, and what the unheard part might have changed is
        ``undetermined``. Where the turn's unsure readings (``turn.readings``) all lead to the
        same verdicts, those are recorded instead (:mod:`cxguard.policy.readings`)."""
        if turn.speaker == "agent" and (
            agreed := readings.agent_verdicts(
                turn,
                lambda t: self._judge_turn(t, self._pack.assertions),
                number_open=bool(self._state.recent_digits.get("agent")),
            )
        ):
            self._state, results = agreed
            return results
        heard_fails: dict[str, AssertionResult] = {}
        if turn.speaker == "agent" and turn.undetermined_reason is not None:
            heard = self.preview(replace(turn, undetermined_reason=None))
            heard_fails = {r.assertion_id: r for r in heard}
        state, results = self._judge_turn(turn, self._pack.assertions)
        self._state = state
        return [
            _heard_fail(heard_fails[r.assertion_id], r)
            if r.assertion_id in heard_fails and r.outcome == "undetermined"
            else r
            for r in results
        ]

    def preview(self, turn: TurnText) -> list[AssertionResult]:
        """The ``fail`` results that the text so far of an agent turn still being spoken
        already decides, as the whole turn (same index) will get them from :meth:`evaluate`.

        Pure: state, obligations, counts and later verdicts are as if it was never called.
        Only previewable assertions (:attr:`PolicyEngine.previewable`) are judged, on the text
        up to its last sentence end (``preview.settled_text``); ``when`` conditions are read as
        for the whole turn. A customer turn, an unreadable one, or text with no finished
        sentence yet, gives ``[]``. Raises :class:`PolicyError` like :meth:`evaluate` for a
        turn index already judged or a finished conversation.
        """
        self._check_next(turn)
        text = settled_text(turn.text)
        if turn.speaker != "agent" or turn.undetermined_reason is not None or not text.strip():
            return []
        _, results = self._judge_turn(
            replace(turn, text=text), self._engine.preview_specs, previewing=True
        )
        return [r for r in results if r.outcome == "fail"]

    def _check_next(self, turn: TurnText) -> None:
        self._open()
        last = self._state.last_turn_index
        if last is not None and turn.index <= last:
            raise PolicyError(
                f"turn {turn.index} arrived after turn {last}: turns must be "
                "evaluated in index order"
            )

    def _judge_turn(
        self, turn: TurnText, specs: Sequence[AssertionSpec], *, previewing: bool = False
    ) -> tuple[ConversationState, list[AssertionResult]]:
        """The state after ``turn`` and the results of ``specs`` on it; changes nothing.
        ``previewing``: ``turn`` may go on, so an unmet requirement never ends a window."""
        self._check_next(turn)
        agent = turn.speaker == "agent"
        st = replace(
            self._state,
            turns=self._state.turns + 1,
            last_turn_index=turn.index,
            agent_turns=self._state.agent_turns + agent,
        )
        view = None
        if turn.undetermined_reason is None or (not agent and turn.text.strip()):
            # pii: the speaker's recent digit-bearing texts go to the check matcher and move on.
            options = self._engine.pii_options
            timed = pii.TimedText(turn.text, turn.start_ms, turn.end_ms)
            previous = st.recent_digits.get(turn.speaker, ())
            view = self._view(turn.text, turn, st)
            recent = pii.carry(previous, timed, options.window_ms)
            st = replace(st, recent_digits={**st.recent_digits, turn.speaker: recent})
            if not agent:
                said = (*st.customer_said, turn.text)[-CUSTOMER_TURNS_KEPT:]
                st = replace(st, customer_said=said)
        unsure: dict[str, str] = {}
        results: list[AssertionResult] = []
        read_from = st
        if view is not None and agent:
            st = self._confirm_identity(st, turn, view)
        elif view is not None:
            st, unsure, results = self._read_customer(st, turn, view)
        settled = None
        if not agent and turn.undetermined_reason is not None and not unsure:
            settled = readings.customer_settled(
                turn,
                st,
                lambda text: self._read_customer(
                    read_from, replace(turn, text=text), self._view(text, turn, read_from)
                ),
            )
        pending: dict[str, Obligation | None] = {o.assertion_id: o for o in st.pending}
        held = list(st.held)
        for spec in specs:
            if isinstance(spec, TemporalAssertion) and agent:
                unmet = unmet_condition(spec.when, st, turn.index)
                before = pending.get(spec.id)
                decision = judge_agent_turn(
                    spec, before, turn, view, unmet, self._grace_ms, previewing=previewing
                )
                if decision.held and decision.obligation is not None:
                    held.append(decision.obligation)  # its verdict comes later
                    pending[spec.id] = None
                else:
                    pending[spec.id] = decision.obligation
                    results.append(self._result(spec, decision, turn, before))
            elif not isinstance(spec, TemporalAssertion) and spec.when.speaker == turn.speaker:
                results.append(self._judge_text(spec, st, turn, view))
            elif not agent and (unread := self._unreadable(spec, st, turn, view, unsure, settled)):
                results.append(self._result(spec, Decision(*unread, None), turn))
        kept = tuple(o for o in pending.values() if o is not None)
        return replace(st, pending=kept, held=tuple(held)), results

    def _unreadable(
        self,
        spec: AssertionSpec,
        st: ConversationState,
        turn: TurnText,
        view: TurnView | None,
        unsure: Mapping[str, str],
        settled: str | None,
    ) -> tuple[Outcome, str] | None:
        """What a customer turn that was (partly) unreadable leaves of ``spec``: ``undetermined``
        where it could have changed it, ``not_applicable`` where its readings ``settled`` it."""
        if spec.id in unsure:
            return "undetermined", unsure[spec.id]
        reads = self._engine.sensitive.get(spec.id)
        if turn.undetermined_reason is None or reads is None:
            return None
        if isinstance(spec, TemporalAssertion) and (
            st.obligation(spec.id) is not None or unmet_condition(spec.when, st, turn.index)
        ):
            return None  # it could not have opened an obligation anyway
        what = "part of customer turn" if view is not None else "customer turn"
        unread = f"{what} {turn.index} unavailable ({turn.undetermined_reason})"
        if settled is not None:
            return "not_applicable", f"{unread}; {settled}"
        return "undetermined", f"{unread}; it may have changed {_READS[reads]}"

    def _view(self, text: str, turn: TurnText, st: ConversationState) -> TurnView:
        return TurnView(
            text,
            turn.speaker,
            self._engine.scoring,
            self._pack.thresholds,
            timed=pii.TimedText(text, turn.start_ms, turn.end_ms),
            previous=st.recent_digits.get(turn.speaker, ()),
            pii_options=self._engine.pii_options,
            customer_said=st.customer_said,
        )

    def _read_customer(
        self, st: ConversationState, turn: TurnText, view: TurnView
    ) -> tuple[ConversationState, dict[str, str], list[AssertionResult]]:
        """Caller intent, then triggers (so a trigger's ``when`` sees this turn's intent). A
        trigger met already by a handoff stamped since this turn began passes here."""
        unsure: dict[str, str] = {}
        met: list[AssertionResult] = []
        for rule in self._pack.state.intents:
            hit = match(rule.match, view)
            if hit.matched:
                st = replace(
                    st, intent=rule.intent, intent_source=f"turn {turn.index}: {hit.evidence}"
                )
                break
            if hit.undetermined:
                for assertion_id, reads in self._engine.sensitive.items():
                    if reads == "intent":
                        unsure[assertion_id] = f"{hit.undetermined}; intent unknown"
                break
        opened = list(st.pending)
        for spec in self._pack.assertions:
            if not isinstance(spec, TemporalAssertion) or st.obligation(spec.id) is not None:
                continue
            if unmet_condition(spec.when, st, turn.index) is not None:
                continue
            hit = match(spec.trigger, view)
            if hit.matched:
                obligation = open_obligation(spec, turn, hit)
                handoff = st.handoff_at_ms
                decision = None
                if spec.handoff_satisfies and handoff is not None:
                    decision = on_handoff(obligation, handoff)
                if decision is None:
                    opened.append(obligation)
                else:
                    met.append(self._result(spec, decision, turn, obligation))
            elif hit.undetermined:
                unsure[spec.id] = f"trigger unknown: {hit.undetermined}"
        return replace(st, pending=tuple(opened)), unsure, met

    def _confirm_identity(
        self, st: ConversationState, turn: TurnText, view: TurnView
    ) -> ConversationState:
        # Applied before this turn is judged: "I've verified you; you can pay in two parts".
        state_spec = self._pack.state
        if st.authenticated or not state_spec.authenticate_on_agent_confirmation:
            return st
        assert state_spec.agent_confirmation is not None  # the schema guarantees it
        hit = match(state_spec.agent_confirmation, view)
        if hit.matched:
            return replace(
                st,
                authenticated=True,
                auth_source=f"agent confirmed on turn {turn.index}: {hit.evidence}",
            )
        return st

    def _judge_text(
        self, spec: TextAssertion, st: ConversationState, turn: TurnText, view: TurnView | None
    ) -> AssertionResult:
        unmet = unmet_condition(spec.when, st, turn.index)
        if unmet is not None:
            return self._result(spec, Decision("not_applicable", unmet, None), turn)
        if view is None:
            why = f"turn text unavailable ({turn.undetermined_reason})"
            return self._result(spec, Decision("undetermined", why, None), turn)
        hit = match(spec, view)
        if hit.undetermined:
            decision = Decision("undetermined", hit.undetermined, None, hit.scores)
        elif hit.matched == spec.negate:
            evidence = hit.evidence if spec.negate else f"required but absent: {hit.evidence}"
            decision = Decision("fail", evidence, None, hit.scores)
        else:
            decision = Decision("pass", hit.evidence, None, hit.scores)
        return self._result(spec, decision, turn)

    # ------------------------------------------------------------------ helpers

    def _result(
        self,
        spec: AssertionSpec,
        decision: Decision,
        turn: TurnText,
        obligation: Obligation | None = None,
    ) -> AssertionResult:
        actions: tuple[str, ...] = ()
        if decision.outcome == "fail":
            actions = spec.on_fail
        elif decision.outcome == "undetermined":
            actions = spec.on_undetermined
        trigger = obligation.trigger_turn if obligation is not None else None
        return AssertionResult(
            spec.id,
            decision.outcome,
            decision.evidence,
            spec.severity,
            actions,
            dict(decision.scores),
            turn.index,
            turn.speaker,
            trigger,
        )

    def _closing(
        self, spec: TemporalAssertion, obligation: Obligation, decision: Decision
    ) -> AssertionResult:
        """A verdict decided after its turn: on the agent turn that used up the window, else
        on the trigger turn."""
        held = obligation.exhausted
        if held is not None:
            anchor = TurnText(held.turn, "agent", "", held.start_ms, held.end_ms)
        else:
            anchor = TurnText(
                obligation.trigger_turn,
                obligation.trigger_speaker,
                "",
                obligation.trigger_start_ms,
                obligation.trigger_end_ms,
            )
        return self._result(spec, decision, anchor, obligation)

    def _temporal(self, assertion_id: str) -> TemporalAssertion:
        spec = next(a for a in self._pack.assertions if a.id == assertion_id)
        assert isinstance(spec, TemporalAssertion)
        return spec

    def _open(self) -> None:
        if self._state.finished:
            raise PolicyError("the conversation has finished")


def _heard_fail(fail: AssertionResult, undetermined: AssertionResult) -> AssertionResult:
    """A prohibition broken by the heard words of an agent turn with an unreadable part."""
    return replace(fail, evidence=f"{fail.evidence} (in the words heard; {undetermined.evidence})")
