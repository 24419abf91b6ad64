"""The evidence room: the hash-chained ledger (redacted by ``cxguard.pii``), drift and governance
reports."""

from __future__ import annotations

from cxguard.evidence.chain import ChainProblem, VerifyReport
from cxguard.evidence.drift import DriftFinding, DriftOptions, detect_drift
from cxguard.evidence.engine import DEFAULT_URL, LedgerOptions
from cxguard.evidence.ledger import EvidenceLedger, tenant_stream
from cxguard.evidence.report import AssertionSummary, GovernanceReport, governance_report

__all__ = [
    "DEFAULT_URL",
    "AssertionSummary",
    "ChainProblem",
    "DriftFinding",
    "DriftOptions",
    "EvidenceLedger",
    "GovernanceReport",
    "LedgerOptions",
    "VerifyReport",
    "detect_drift",
    "governance_report",
    "tenant_stream",
]
