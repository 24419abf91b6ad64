"""Per-call rate limit of a chat or webhook channel, sans I/O: one bad call cannot flood it.

Each call may send ``max_per_call`` alerts per ``window_s`` (a fixed window that opens with
the call's first alert). Alerts beyond that are *folded*: counted into a digest of the call
that the sink posts when the window closes ("7 more alerts on call CA1: …", with every
folded alert id), so nothing is dropped silently. The outbox records each folded alert as
delivered with ``folded_into`` naming its digest (evidence of where it went).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cxguard.errors import ConfigError

SEVERITY_RANK = {"info": 0, "minor": 1, "major": 2, "critical": 3}
"""Policy severities (``cxguard.policy.spec.Severity``), lowest first."""


def at_least(severity: str, what: str = "min_severity") -> frozenset[str]:
    """The severities at or above ``severity`` (a route's filter); ConfigError if unknown."""
    if severity not in SEVERITY_RANK:
        raise ConfigError(f"{what}: min_severity {severity!r} is not one of {list(SEVERITY_RANK)}")
    return frozenset(s for s, rank in SEVERITY_RANK.items() if rank >= SEVERITY_RANK[severity])


def severity_rank(severity: str) -> int:
    """Unknown severities (an error alert's, a future one) rank as ``major``: shown, not hidden."""
    return SEVERITY_RANK.get(severity, SEVERITY_RANK["major"])


@dataclass
class Digest:
    """Alerts of one call folded during one window."""

    tenant: str
    call_id: str
    window_end: float
    alert_ids: list[str] = field(default_factory=list)
    assertions: dict[str, int] = field(default_factory=dict)
    top_severity: str = "info"

    @property
    def digest_id(self) -> str:
        """Stable for the same folded alerts (a retried digest keeps its ``webhook-id``)."""
        raw = "\x1f".join(["cxguard-digest-v1", self.tenant, self.call_id, *self.alert_ids])
        return "digest-" + hashlib.sha256(raw.encode()).hexdigest()[:24]

    def add(self, alert_id: str, assertion: str, severity: str) -> None:
        self.alert_ids.append(alert_id)
        self.assertions[assertion] = self.assertions.get(assertion, 0) + 1
        if severity_rank(severity) > severity_rank(self.top_severity):
            self.top_severity = severity

    def summary(self) -> str:
        counts = ", ".join(f"{a} ×{n}" for a, n in sorted(self.assertions.items()))
        return (
            f"{len(self.alert_ids)} more alert(s) on call {self.call_id} were folded by the "
            f"per-call rate limit (highest severity {self.top_severity}): {counts}"
        )


@dataclass
class _Window:
    opened: float
    sent: int = 0


class CallRateLimit:
    """``admit(...)`` True: send now. False: folded into the call's open digest;
    ``due(now)`` hands out the digests whose window has closed."""

    def __init__(self, max_per_call: int = 5, window_s: float = 60.0) -> None:
        if max_per_call < 1 or window_s <= 0:
            raise ConfigError("rate limit: max_per_call must be >= 1 and window_s > 0")
        self.max_per_call = max_per_call
        self.window_s = window_s
        self._windows: dict[tuple[str, str], _Window] = {}
        self._digests: dict[tuple[str, str], Digest] = {}

    def admit(
        self, tenant: str, call_id: str, alert_id: str, assertion: str, severity: str, now: float
    ) -> bool:
        key = (tenant, call_id)
        window = self._windows.get(key)
        if window is None or now - window.opened >= self.window_s:
            if key in self._digests:
                return self._fold(key, alert_id, assertion, severity)  # its digest goes first
            window = self._windows[key] = _Window(now)
        if window.sent < self.max_per_call:
            window.sent += 1
            return True
        return self._fold(key, alert_id, assertion, severity)

    def refund(self, tenant: str, call_id: str) -> None:
        """An admitted alert that could not be sent (it is retried, and admitted again)."""
        window = self._windows.get((tenant, call_id))
        if window is not None and window.sent > 0:
            window.sent -= 1

    def _fold(self, key: tuple[str, str], alert_id: str, assertion: str, severity: str) -> bool:
        digest = self._digests.get(key)
        if digest is None:
            end = self._windows[key].opened + self.window_s
            digest = self._digests[key] = Digest(key[0], key[1], end)
        digest.add(alert_id, assertion, severity)
        return False

    def open_digest(self, tenant: str, call_id: str) -> Digest | None:
        return self._digests.get((tenant, call_id))

    def next_due(self) -> float | None:
        return min((d.window_end for d in self._digests.values()), default=None)

    def due(self, now: float, *, everything: bool = False) -> list[Digest]:
        """Digests to post now (all of them when closing); their calls start a new window."""
        out = [d for d in self._digests.values() if everything or d.window_end <= now]
        for d in out:
            key = (d.tenant, d.call_id)
            del self._digests[key]
            self._windows.pop(key, None)
        self._forget(now)
        return out

    def _forget(self, now: float) -> None:
        """Closed windows of calls with nothing folded are not needed any more."""
        stale = [
            k
            for k, w in self._windows.items()
            if now - w.opened >= self.window_s and k not in self._digests
        ]
        for k in stale:
            del self._windows[k]
