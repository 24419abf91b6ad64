"""Admission control: whether this sidecar should be sent new calls (``/readyz``).

A load balancer (or a Kubernetes readiness probe) stops routing new calls to a sidecar whose
``/readyz`` answers 503; calls already connected are never dropped — this only steers the
next ones, before latency breaks (AWS Live Call Analytics sheds new calls the same way).
"""

from __future__ import annotations

from cxguard.runtime.settings import AdmissionSettings


def refusal(settings: AdmissionSettings, active_calls: int, asr_backlog: int) -> str | None:
    """Why no new call should come here now, or None when one may."""
    cap = settings.max_active_calls
    if cap > 0 and active_calls >= cap:
        return f"{active_calls} active calls (cap {cap})"
    lag = settings.max_asr_backlog
    if lag > 0 and asr_backlog >= lag:
        return f"{asr_backlog} segments waiting for ASR (cap {lag})"
    return None
