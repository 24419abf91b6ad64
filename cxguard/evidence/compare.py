"""What promoting a shadow assertion would have changed (``cxguard policy compare``).

A shadow assertion's verdicts are recorded like any other, so its effect can be replayed on
the ledger before it goes live. Alerts are counted as the live path raises them: each live
``fail`` is one alert, a turn's ``undetermined`` verdicts share one alert; a call is handed
off once, by its first failing verdict whose ``on_fail`` asks for it. For each shadow
assertion over the period: how many turns it judged and failed, the alerts the tenant got
and would have got with it live, how many of its failures fell on turns already alerted (it
duplicates a live assertion there) and how many calls it would newly have handed off.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from cxguard.evidence.ledger import EvidenceLedger

_Turn = tuple[str, int]


@dataclass(frozen=True)
class ShadowImpact:
    assertion_id: str
    judged: int
    """Applicable verdicts (pass, fail, undetermined) over the period."""
    fails: int
    undetermined: int
    alerts_live: int
    """Alerts the tenant got over the period (live assertions only)."""
    alerts_if_promoted: int
    turns_alerted_anyway: int
    """Turns it failed that a live assertion had alerted already."""
    new_alert_turns: int
    calls_affected: int
    new_handoff_calls: int
    """Calls it would have handed off that no live assertion did."""

    @property
    def added_alerts(self) -> int:
        return self.alerts_if_promoted - self.alerts_live

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "added_alerts": self.added_alerts}


def compare_shadow(
    ledger: EvidenceLedger,
    tenant: str,
    since: float | None = None,
    until: float | None = None,
    assertion: str | None = None,
) -> list[ShadowImpact]:
    rows = ledger.deviations(tenant, since, until)
    live_fail_turns: set[_Turn] = set()
    live_unsure_turns: set[_Turn] = set()
    live_fails = 0
    handed_off: set[str] = set()
    shadow: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        turn = (r.call_id, int(r.turn_index))
        if r.mode == "shadow":
            shadow[r.assertion_id].append(r)
        elif r.outcome == "fail":
            live_fails += 1
            live_fail_turns.add(turn)
            if "handoff" in (r.actions or []):
                handed_off.add(r.call_id)
        else:
            live_unsure_turns.add(turn)
    alerts_live = live_fails + len(live_unsure_turns)
    judged: dict[str, int] = defaultdict(int)
    for c in ledger.rate_counts(tenant, since, until):
        if c.mode == "shadow" and c.outcome != "not_applicable":
            judged[c.assertion_id] += c.n
    impacts = []
    for aid in sorted(set(shadow) | set(judged)):
        if assertion is not None and aid != assertion:
            continue
        mine = shadow.get(aid, [])
        fails = [r for r in mine if r.outcome == "fail"]
        unsure_turns = {(r.call_id, int(r.turn_index)) for r in mine if r.outcome != "fail"}
        fail_turns = {(r.call_id, int(r.turn_index)) for r in fails}
        alerted = live_fail_turns | live_unsure_turns
        new_handoffs = {
            r.call_id
            for r in fails
            if "handoff" in (r.actions or []) and r.call_id not in handed_off
        }
        impacts.append(
            ShadowImpact(
                assertion_id=aid,
                judged=judged.get(aid, 0),
                fails=len(fails),
                undetermined=len(mine) - len(fails),
                alerts_live=alerts_live,
                alerts_if_promoted=alerts_live + len(fails) + len(unsure_turns - live_unsure_turns),
                turns_alerted_anyway=len(fail_turns & alerted),
                new_alert_turns=len((fail_turns | unsure_turns) - alerted),
                calls_affected=len({c for c, _ in fail_turns | unsure_turns}),
                new_handoff_calls=len(new_handoffs),
            )
        )
    return impacts
