"""The pooled ASR wire format: what a sidecar puts on the work streams and what a worker
puts on the sidecar's reply stream (Redis Stream entries: flat maps of bytes).

A segment travels as raw 16-bit PCM with its call, tenant, speaker and stream times; its
``id`` is unique per sidecar and per segment, so a sidecar settles each segment once even when
two workers transcribed it (a worker died between its reply and its acknowledgement).
A transcript comes back with every :class:`~cxguard.model.Transcript` field; a refusal comes
back as its error kind and message, and is rebuilt into the same error class the in-process
queue would have raised (``undetermined`` downstream).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cxguard.asr.guards import AsrRejected
from cxguard.errors import AsrError, AsrOverloaded
from cxguard.model import Segment, Speaker, Transcript

Fields = dict[bytes, bytes]

AGENT, CUSTOMER = "agent", "customer"


def work_stream(prefix: str, speaker: str) -> str:
    """Agent segments have their own stream, which workers drain first."""
    return f"{prefix}:{AGENT if speaker == AGENT else CUSTOMER}"


def work_streams(prefix: str) -> tuple[str, str]:
    return work_stream(prefix, AGENT), work_stream(prefix, CUSTOMER)


def reply_stream(prefix: str, sidecar: str) -> str:
    return f"{prefix}:reply:{sidecar}"


@dataclass(frozen=True)
class WorkItem:
    id: str
    reply_to: str
    call_id: str
    tenant: str
    segment: Segment
    published: float
    """Wall clock (epoch s) when the sidecar published it: deadlines hold across processes."""
    deadline: float
    """Wall clock after which a worker refuses it unread (AsrOverloaded) instead."""

    def encode(self) -> dict[str, str | bytes]:
        s = self.segment
        return {
            "id": self.id,
            "reply": self.reply_to,
            "call": self.call_id,
            "tenant": self.tenant,
            "speaker": s.speaker,
            "rate": str(s.sample_rate),
            "start_ms": repr(s.start_ms),
            "end_ms": repr(s.end_ms),
            "partial": "1" if s.partial else "0",
            "published": repr(self.published),
            "deadline": repr(self.deadline),
            "pcm": s.pcm16,
        }

    @classmethod
    def decode(cls, f: Fields) -> WorkItem:
        speaker: Speaker = "agent" if f[b"speaker"] == b"agent" else "customer"
        seg = Segment(
            speaker,
            f[b"pcm"],
            int(f[b"rate"]),
            float(f[b"start_ms"]),
            float(f[b"end_ms"]),
            partial=f[b"partial"] == b"1",
        )
        return cls(
            f[b"id"].decode(),
            f[b"reply"].decode(),
            f[b"call"].decode(),
            f[b"tenant"].decode(),
            seg,
            float(f[b"published"]),
            float(f[b"deadline"]),
        )


def encode_result(item_id: str, result: Transcript | AsrError, worker: str) -> dict[str, str]:
    if isinstance(result, Transcript):
        body = {
            "text": result.text,
            "model_id": result.model_id,
            "avg_logprob": result.avg_logprob,
            "no_speech_prob": result.no_speech_prob,
            "asr_ms": result.asr_ms,
            "decode": result.decode,
        }
        return {"id": item_id, "ok": "1", "worker": worker, "body": json.dumps(body)}
    kind = "overloaded" if isinstance(result, AsrOverloaded) else "error"
    failure: dict[str, object] = {"kind": kind, "message": str(result)}
    if isinstance(result, AsrRejected):
        failure = {
            "kind": "rejected",
            "message": str(result),
            "reason": result.reason,
            "text": result.text,
            "model_id": result.model_id,
            "avg_logprob": result.avg_logprob,
            "no_speech_prob": result.no_speech_prob,
            "readings": list(result.readings),
        }
    return {"id": item_id, "ok": "0", "worker": worker, "body": json.dumps(failure)}


def decode_result(f: Fields) -> tuple[str, Transcript | AsrError]:
    item_id = f[b"id"].decode()
    body = json.loads(f[b"body"])
    if f[b"ok"] == b"1":
        return item_id, Transcript(
            body["text"],
            body["model_id"],
            body["avg_logprob"],
            body["no_speech_prob"],
            float(body["asr_ms"]),
            body["decode"],
        )
    message = str(body["message"])
    if body["kind"] == "overloaded":
        return item_id, AsrOverloaded(message)
    if body["kind"] == "rejected":
        exc = AsrRejected(
            body["reason"],
            "",
            text=body["text"],
            model_id=body["model_id"],
            avg_logprob=body["avg_logprob"],
            no_speech_prob=body["no_speech_prob"],
        )
        exc.args = (message,)  # the worker's message, word for word
        exc.readings = tuple(str(r) for r in body.get("readings", ()))
        return item_id, exc
    return item_id, AsrError(message)
