"""Prometheus metrics, served at ``/metrics``.

Stage latencies are histograms in seconds with buckets around the in-line budget (a verdict
is useful only before the customer's next turn, ~0.2–1 s after the agent stops).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

STAGE_LATENCY = Histogram(
    "cxguard_stage_latency_seconds",
    "Latency of each pipeline stage per turn (queue, asr, policy, end_to_verdict, publish).",
    ["stage"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
ACTIVE_CALLS = Gauge(
    "cxguard_active_calls", "Calls being evaluated now.", ["source"], registry=REGISTRY
)
CALLS = Counter("cxguard_calls_total", "Calls started.", ["source"], registry=REGISTRY)
SEGMENTS = Counter(
    "cxguard_segments_total", "Speech segments cut by the VAD.", ["speaker"], registry=REGISTRY
)
TURNS = Counter("cxguard_turns_total", "Speaker turns judged.", ["speaker"], registry=REGISTRY)
BACKCHANNELS = Counter(
    "cxguard_backchannels_total",
    "Backchannels heard under the other speaker's turn (recorded, not judged).",
    ["speaker"],
    registry=REGISTRY,
)
VERDICTS = Counter("cxguard_verdicts_total", "Verdicts by outcome.", ["outcome"], registry=REGISTRY)
ALERTS = Counter("cxguard_alerts_total", "Alerts raised.", ["kind"], registry=REGISTRY)
ALERT_FAILURES = Counter(
    "cxguard_alert_failures_total", "Alerts a sink could not take.", ["sink"], registry=REGISTRY
)
HANDOFFS = Counter(
    "cxguard_handoffs_total", "Handoff signals by result.", ["result"], registry=REGISTRY
)
ASR_QUEUE_DEPTH = Gauge("cxguard_asr_queue_depth", "Turns waiting for ASR.", registry=REGISTRY)
ASR_DROPPED = Counter(
    "cxguard_asr_dropped_total",
    "Turns not transcribed (overload); each got undetermined verdicts.",
    ["reason"],
    registry=REGISTRY,
)
PIPELINE_ERRORS = Counter(
    "cxguard_pipeline_errors_total",
    "Turns or events a call's pipeline could not process (see the log).",
    registry=REGISTRY,
)
EARLY_ALERTS = Counter(
    "cxguard_early_alerts_total",
    "Violations alerted mid-turn, before the speaker finished.",
    registry=REGISTRY,
)
PROTOCOL_ERRORS = Counter(
    "cxguard_protocol_errors_total",
    "Streams closed for protocol errors.",
    ["protocol"],
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "cxguard_auth_failures_total", "Rejected websocket upgrades.", ["protocol"], registry=REGISTRY
)
DUPLICATE_HEADERS = Counter(
    "cxguard_duplicate_security_headers_total",
    "Requests refused (400) for sending a security header more than once.",
    ["header"],
    registry=REGISTRY,
)
SPOOL_DEPTH = Gauge(
    "cxguard_evidence_spool_depth",
    "Evidence writes durable in the local spool, not yet in the ledger.",
    registry=REGISTRY,
)
LEDGER_WRITE_FAILURES = Counter(
    "cxguard_ledger_write_failures_total",
    "Attempts to move spooled writes into the ledger that failed (retried).",
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "cxguard_outbox_deliveries_total",
    "Outbox delivery state changes per sink (delivered, retrying, failed).",
    ["sink", "state"],
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)
