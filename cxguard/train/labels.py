"""Label sets of the two head groups and what each label means (copied into model cards)."""

from __future__ import annotations

from typing import Final

CUSTOMER: Final[dict[str, str]] = {
    "customer.closure": "wants to close / cancel / terminate the account, service or subscription",
    "customer.billing_question": "asks about a bill, charge, fee, balance, due date or how to pay",
    "customer.payment_difficulty": "cannot pay in full or on time; asks for time or installments",
    "customer.human_request": "asks for a human, a live agent, a representative or a supervisor",
    "customer.dispute": "contests a charge (unrecognised, duplicate, wrong) or demands money back",
    "customer.other": "none of the above",
}

AGENT: Final[dict[str, str]] = {
    "agent.payment_arrangement": "discloses or offers a payment arrangement: plan, installments, "
    "deferral, extension, hardship program, split payments — however phrased",
    "agent.escalation": "hands the caller to a human, supervisor or other team now (transfer, "
    "connect, queue); not a call-back, an offer to transfer, a retention pitch or a fee warning",
    "agent.processes_closure": "closes or cancels the account or service itself (not a card, "
    "an autopay, a payment or an appointment)",
    "agent.retention_offer": "offers a discount or incentive so that the caller does not leave",
    "agent.unauthorized_commitment": "guarantees, promises or waives (refund, fee, outcome)",
    "agent.requests_verification": "asks the caller for identity-verification details",
    "agent.confirms_verified": "states that the caller's identity has been verified",
    "agent.off_topic": "upsell / cross-sell or chat unrelated to a service call",
    "agent.ai_disclosure": "says that the agent is an AI / virtual / automated assistant",
}

GROUPS: Final[dict[str, dict[str, str]]] = {"customer": CUSTOMER, "agent": AGENT}

# The assertions the billing pack treats as critical; the card reports them first.
CRITICAL: Final[tuple[str, ...]] = (
    "customer.closure",
    "customer.payment_difficulty",
    "customer.human_request",
    "agent.payment_arrangement",
    "agent.escalation",
    "agent.processes_closure",
    "agent.unauthorized_commitment",
    "agent.off_topic",
    "agent.ai_disclosure",
)
