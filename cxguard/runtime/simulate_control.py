"""Mid-call facts for a simulated call: control-API requests at chosen stream positions.

``cxguard simulate --fact 22500:authenticated --control-token T`` posts
``{"authenticated": true}`` to ``/calls/{call_id}/events`` on the same server when the
played stream reaches 22.5 s (a :data:`~cxguard.runtime.simulate.Cue`). ``NAME=VALUE`` for
``intent`` and ``agent_version``; ``unauthenticated`` posts ``{"authenticated": false}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from cxguard.errors import ConfigError
from cxguard.runtime.simulate import Cue

_FLAGS = {"authenticated": ("authenticated", True), "unauthenticated": ("authenticated", False)}
_FLAGS["handoff"] = ("handoff", True)
_VALUES = frozenset({"intent", "agent_version"})


@dataclass(frozen=True)
class Fact:
    at_ms: float
    body: Mapping[str, Any]


def parse_fact(spec: str) -> Fact:
    """``MS:NAME`` or ``MS:NAME=VALUE`` → the request to send at ``MS``."""
    at, sep, what = spec.partition(":")
    name, has_value, value = what.partition("=")
    try:
        at_ms = float(at)
    except ValueError:
        raise ConfigError(f"--fact expects MS:NAME[=VALUE], got {spec!r}") from None
    if not sep or at_ms < 0:
        raise ConfigError(f"--fact expects MS:NAME[=VALUE], got {spec!r}")
    if name in _FLAGS and not has_value:
        key, flag = _FLAGS[name]
        return Fact(at_ms, {key: flag})
    if name in _VALUES and value:
        return Fact(at_ms, {name: value})
    raise ConfigError(
        f"--fact {spec!r}: NAME is authenticated, unauthenticated, handoff, intent=V or "
        "agent_version=V"
    )


def fact_cues(
    ws_url: str, call_id: str, facts: Sequence[Fact], token: str | None, answers: list[Any]
) -> list[Cue]:
    """A cue per fact; each appends the server's JSON answer (or its error) to ``answers``."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    url = f"{scheme}://{parts.netloc}/calls/{quote(call_id, safe='')}/events"
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def cue(fact: Fact) -> Cue:
        async def post() -> None:
            async with httpx.AsyncClient(timeout=5.0) as http:
                try:
                    reply = await http.post(url, json=dict(fact.body), headers=headers)
                except httpx.HTTPError as exc:
                    answers.append({"at_ms": fact.at_ms, "error": str(exc)})
                    return
            answer = (
                reply.json()
                if reply.headers.get("content-type", "").startswith("application/json")
                else {"error": reply.text.strip()}
            )
            answers.append({"status": reply.status_code, **answer})

        return fact.at_ms, post

    return [cue(f) for f in facts]
