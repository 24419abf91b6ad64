"""The evidence room (redacted by ``cxguard.pii``): the hash-chained ledger, its spool, keyed
heads, drift and governance reports."""

from __future__ import annotations

from cxguard.evidence.chain import ChainProblem, VerifyReport
from cxguard.evidence.drift import DriftFinding, DriftOptions, detect_drift
from cxguard.evidence.engine import DEFAULT_URL, LedgerOptions
from cxguard.evidence.heads import HeadKey, SignedHead
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.evidence.progress import CallProgress
from cxguard.evidence.report import AssertionSummary, GovernanceReport, governance_report
from cxguard.evidence.spool import Judged, Spool, SpooledSegment

__all__ = [
    "DEFAULT_URL",
    "AssertionSummary",
    "CallProgress",
    "ChainProblem",
    "DriftFinding",
    "DriftOptions",
    "EvidenceLedger",
    "GovernanceReport",
    "HeadKey",
    "Judged",
    "LedgerOptions",
    "SignedHead",
    "Spool",
    "SpooledSegment",
    "VerifyReport",
    "detect_drift",
    "governance_report",
]
