"""``cxguard simulate``: play two mono WAVs to a server as one call on any of its doors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from cxguard.cli.common import (
    LogFormatOpt,
    app,
    key_values,
    log_to_stderr,
)
from cxguard.errors import CxguardError

if TYPE_CHECKING:
    from cxguard.runtime.simulate_control import Fact


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="ws://HOST:PORT/twilio or …/audiohook")],
    agent: Annotated[Path, typer.Option(exists=True, dir_okay=False)],
    customer: Annotated[Path, typer.Option(exists=True, dir_okay=False)],
    protocol: Annotated[
        str, typer.Option(help="Which platform to play: twilio, audiohook or stream.")
    ] = "twilio",
    fast: Annotated[bool, typer.Option("--fast", help="Send as fast as possible.")] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="K=V customParameter (Twilio) / customConfig (AudioHook)."),
    ] = None,
    auth_token: Annotated[
        str | None,
        typer.Option(envvar="CXGUARD_TWILIO_AUTH_TOKEN", help="Twilio: sign the upgrade."),
    ] = None,
    api_key: Annotated[
        str, typer.Option(envvar="CXGUARD_AUDIOHOOK_API_KEY", help="AudioHook: X-API-KEY.")
    ] = "cxguard-simulator",
    client_secret: Annotated[
        str,
        typer.Option(
            envvar="CXGUARD_AUDIOHOOK_CLIENT_SECRET", help="AudioHook: base64 client secret."
        ),
    ] = "",
    encoding: Annotated[str, typer.Option(help="stream: mulaw or l16.")] = "l16",
    rate: Annotated[int, typer.Option(help="stream: 8000 or 16000 Hz.")] = 16000,
    style: Annotated[
        str, typer.Option(help="stream: first message as cxguard, vonage or audio_fork.")
    ] = "cxguard",
    token: Annotated[
        str | None, typer.Option(envvar="CXGUARD_STREAM_TOKEN", help="stream: bearer token.")
    ] = None,
    fact: Annotated[
        list[str] | None,
        typer.Option(
            "--fact",
            help="MS:NAME[=VALUE]: POST a mid-call fact to the control API at MS of the call "
            "(authenticated, unauthenticated, handoff, intent=V, agent_version=V).",
        ),
    ] = None,
    control_token: Annotated[
        str | None,
        typer.Option(envvar="CXGUARD_CONTROL_TOKEN", help="Bearer token for --fact requests."),
    ] = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """Stream two mono WAVs as one call: a Twilio both_tracks Media Stream, a stereo
    Genesys AudioHook session, or a stereo /stream websocket. Prints one JSON line; exit 1
    if the server broke the protocol, 2 if the stream could not be played."""
    import base64
    import binascii

    log_to_stderr(False, log_format, quiet=logging.WARNING)
    if protocol not in ("twilio", "audiohook", "stream"):
        raise typer.BadParameter(f"--protocol must be twilio, audiohook or stream: {protocol!r}")
    if encoding not in ("mulaw", "l16") or style not in ("cxguard", "vonage", "audio_fork"):
        raise typer.BadParameter("--encoding is mulaw or l16; --style cxguard, vonage, audio_fork")
    from cxguard.runtime.simulate_control import parse_fact

    try:
        facts = [parse_fact(f) for f in fact or []]
    except CxguardError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stream = StreamArgs(encoding, rate, style, token, tuple(facts), control_token)
    params = key_values(param, "--param")
    try:
        secret = base64.b64decode(client_secret, validate=True)
    except binascii.Error as exc:
        raise typer.BadParameter("--client-secret is not base64") from exc
    try:
        report = asyncio.run(
            _simulate(
                protocol, url, agent, customer, fast, params, auth_token, api_key, secret, stream
            )
        )
    except (CxguardError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(report))
    raise typer.Exit(1 if report["problems"] else 0)


async def _simulate(
    protocol: str,
    url: str,
    agent: Path,
    customer: Path,
    fast: bool,
    params: dict[str, str],
    auth_token: str | None,
    api_key: str,
    secret: bytes,
    stream: StreamArgs,
) -> dict[str, object]:
    import uuid

    from cxguard.runtime.simulate import SimulationOptions, simulate_call
    from cxguard.runtime.simulate_audiohook import AudioHookSimulation, simulate_audiohook_call
    from cxguard.runtime.simulate_control import fact_cues
    from cxguard.runtime.simulate_stream import StreamSimulation, simulate_stream_call

    # The call id is chosen here, so the control API can be told about it mid-call.
    call_id = {
        "twilio": "CA" + uuid.uuid4().hex,
        "audiohook": str(uuid.uuid4()),
        "stream": f"call-{uuid.uuid4().hex}",
    }[protocol]
    answers: list[object] = []
    cues = fact_cues(url, call_id, stream.facts, stream.control_token, answers)
    facts = {"facts": answers} if stream.facts else {}
    if protocol == "twilio":
        options = SimulationOptions(
            fast=fast, parameters=params, auth_token=auth_token, call_sid=call_id
        )
        result = await simulate_call(url, agent, customer, options, cues)
        ids = {"call_sid": result.call_sid, "stream_sid": result.stream_sid}
        return _report(protocol, ids, result, facts)
    if protocol == "audiohook":
        hook = AudioHookSimulation(
            fast=fast,
            api_key=api_key,
            client_secret=secret,
            custom_config=params,
            conversation_id=call_id,
        )
        outcome = await simulate_audiohook_call(url, agent, customer, hook, cues)
        named: dict[str, object] = {
            "conversation_id": outcome.conversation_id,
            "server_messages": [m.get("type") for m in outcome.server_messages],
        }
        return _report(protocol, named, outcome, facts)
    mono = ("customer",) if stream.style == "vonage" else ("customer", "agent")
    wanted = StreamSimulation(
        fast=fast,
        encoding="PCMU" if stream.encoding == "mulaw" else "L16",
        sample_rate=stream.rate,
        channel_map=mono,
        style=stream.style,  # type: ignore[arg-type]  # checked by the command
        token=stream.token,
        parameters=params,
        call_id=call_id,
    )
    played = await simulate_stream_call(url, agent, customer, wanted, cues)
    return _report(protocol, {"call_id": played.call_id}, played, facts)


class _Played(Protocol):
    """What every simulator's result carries."""

    @property
    def frames(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def problems(self) -> Sequence[str]: ...


def _report(
    protocol: str, ids: Mapping[str, object], played: _Played, facts: Mapping[str, object]
) -> dict[str, object]:
    """The one JSON line ``simulate`` prints: the protocol's ids, then what every one has."""
    return {
        "protocol": protocol,
        **ids,
        "frames": played.frames,
        "seconds": round(played.seconds, 3),
        "close_code": played.close_code,
        "problems": list(played.problems),
        **facts,
    }


@dataclass(frozen=True)
class StreamArgs:
    encoding: str
    rate: int
    style: str
    token: str | None
    facts: tuple[Fact, ...] = ()
    control_token: str | None = None
