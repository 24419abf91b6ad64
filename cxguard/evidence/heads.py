"""Keyed chain heads: an HMAC-SHA256 of each chain's end under a key the database never sees.

The hash chain alone shows a changed row only to someone who does not recompute the hashes:
whoever can write the database can rewrite a call's rows *and* their hashes and the head.
With a key (``ledger.key`` in the settings, from a secret file or ``CXGUARD_EVIDENCE_KEY``),
every write also stores ``head_mac = "<key id>:<hmac>"`` over the head, and ``cxguard
evidence verify --key`` recomputes it from the rows: a rewritten chain whose head was
recomputed without the key fails. ``cxguard evidence heads`` exports the signed heads as
JSON lines a third party can keep; ``verify --heads FILE`` then also finds chains that were
cut back or deleted whole.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cxguard.errors import EvidenceError

MIN_KEY_BYTES = 16
_DOMAIN = b"cxguard-evidence-head-v1"


@dataclass(frozen=True)
class HeadKey:
    """An HMAC key for chain heads; ``key_id`` names it without revealing it."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise EvidenceError(f"the evidence key must be at least {MIN_KEY_BYTES} bytes")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"key-id:" + self.secret).hexdigest()[:8]

    def sign(self, tenant: str, call_id: str, next_seq: int, head_hash: str) -> str:
        """``"<key id>:<hex>"``; ``call_id`` "" is a tenant's chain of findings."""
        message = b"\x1f".join(
            [_DOMAIN, tenant.encode(), call_id.encode(), str(next_seq).encode(), head_hash.encode()]
        )
        return f"{self.key_id}:{hmac.new(self.secret, message, hashlib.sha256).hexdigest()}"

    def check(self, mac: str | None, tenant: str, call_id: str, next_seq: int, head: str) -> str:
        """Why ``mac`` does not authenticate this head, or "" when it does."""
        if not mac:
            return "chain head is not signed"
        key_id, _, _ = mac.partition(":")
        if key_id != self.key_id:
            return f"chain head signed with another key (id {key_id}, given {self.key_id})"
        if not hmac.compare_digest(mac, self.sign(tenant, call_id, next_seq, head)):
            return "chain head signature does not match its rows (chain rewritten)"
        return ""


@dataclass(frozen=True)
class SignedHead:
    """One exported head: enough for a third party to hold the ledger to it later."""

    tenant: str
    call_id: str
    next_seq: int
    head_hash: str
    head_mac: str | None
    exported_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str) -> SignedHead:
        try:
            return cls(
                tenant=str(raw["tenant"]),
                call_id=str(raw["call_id"]),
                next_seq=int(raw["next_seq"]),
                head_hash=str(raw["head_hash"]),
                head_mac=None if raw.get("head_mac") is None else str(raw["head_mac"]),
                exported_at=float(raw.get("exported_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceError(f"{where}: not an exported head ({exc})") from None


def parse_heads(text: str, source: str) -> list[SignedHead]:
    """Heads from ``cxguard evidence heads`` output; errors name ``source:line``."""
    heads = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvidenceError(f"{source}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise EvidenceError(f"{source}:{number}: not an exported head")
        heads.append(SignedHead.from_mapping(raw, f"{source}:{number}"))
    return heads
