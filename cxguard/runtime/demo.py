"""``cxguard demo``: the sidecar and a simulated Twilio call in one process, printed live."""

from __future__ import annotations

import os
import secrets
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.app import run_with_call
from cxguard.runtime.settings import Settings, TenantSettings
from cxguard.runtime.simulate import SimulationOptions, SimulationResult

_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "undetermined": "bold yellow",
    "not_applicable": "dim",
}


def demo_audio() -> tuple[Path, Path]:
    base = Path(str(resources.files("cxguard") / "data" / "demo"))
    return base / "agent.wav", base / "customer.wav"


@dataclass
class LivePrinter:
    console: Console
    verdicts: list[Verdict] = field(default_factory=list)

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        self.verdicts.extend(verdicts)
        if text is not None:
            who = "[cyan]agent   [/]" if text.speaker == "agent" else "[magenta]customer[/]"
            shown = verdicts[0].text if verdicts else text.text
            if text.undetermined_reason:
                shown = f"[yellow](not transcribed: {text.undetermined_reason})[/]"
            self.console.print(f"{text.start_ms / 1000:6.1f}s  #{text.index:<2} {who} {shown}")
        for v in verdicts:
            if v.outcome in ("fail", "undetermined"):
                took = v.latency_ms.get("end_to_verdict")
                extra = f"  ({took:.0f} ms after end of turn)" if took else ""
                self.console.print(
                    f"           [{_STYLE[v.outcome]}]{v.outcome.upper():>4}"
                    f"[/] {v.assertion_id}: {v.evidence}{extra}"
                )
        if text is not None and text.speaker == "agent":
            passed = sum(v.outcome == "pass" for v in verdicts)
            self.console.print(f"           [green]{passed} passed[/]", highlight=False)


DEMO_TENANT = "northwind"
"""The tenant the demo call claims (the loopback door has no credentials to say otherwise)."""


def with_console_token(settings: Settings) -> tuple[Settings, str]:
    """The demo tenant's console token: configured, ``CXGUARD_CONSOLE_TOKEN``, or a new
    random one for this demo."""
    tenant = settings.tenant(DEMO_TENANT)
    if tenant is not None and tenant.console_token:
        return settings, tenant.console_token
    token = os.environ.get("CXGUARD_CONSOLE_TOKEN") or secrets.token_urlsafe(18)
    others = tuple(t for t in settings.tenants if t.name != DEMO_TENANT)
    own = (
        replace(tenant, console_token=token)
        if tenant
        else TenantSettings(DEMO_TENANT, console_token=token)
    )
    return replace(settings, tenants=(*others, own)), token


def run_demo(
    settings: Settings, *, fast: bool = False, console: Console | None = None, stay: bool = False
) -> int:
    """``stay``: keep serving after the call (the console shows it) until Ctrl-C."""
    console = console or Console()
    agent, customer = demo_audio()
    printer = LivePrinter(console)
    settings, token = with_console_token(settings)

    def listening(port: int) -> None:
        console.print(
            f"[bold]supervisor console[/]: http://{settings.host}:{port}/console?token={token}",
            highlight=False,
            soft_wrap=True,
        )

    def staying(result: SimulationResult) -> None:
        _summary(console, printer.verdicts, settings, result.call_sid, fast)
        console.print(
            "[bold]the call is over[/]; the console keeps showing it. Ctrl-C to stop.",
            highlight=False,
        )

    console.print(
        f"[bold]cxguard demo[/]: streaming the bundled billing call "
        f"({'as fast as possible' if fast else 'real time'}) over a Twilio Media "
        f"Stream to ws://{settings.host}:{settings.port}/twilio …"
    )
    options = SimulationOptions(
        fast=fast, parameters={"tenant": DEMO_TENANT, "authenticated": "false"}
    )
    result = run_with_call(
        settings,
        agent,
        customer,
        options,
        listener=printer,
        on_listening=listening,
        stay=staying if stay else None,
    )
    if not stay:
        _summary(console, printer.verdicts, settings, result.call_sid, fast)
    return 0


def _summary(
    console: Console, verdicts: list[Verdict], settings: Settings, call_id: str, fast: bool
) -> None:
    table = Table(title="Violations by assertion")
    for col in ("assertion", "pass", "fail", "undetermined", "n/a"):
        table.add_column(col)
    counts: dict[str, Counter[str]] = {}
    for v in verdicts:
        counts.setdefault(v.assertion_id, Counter())[v.outcome] += 1
    for assertion, c in sorted(counts.items()):
        table.add_row(
            assertion,
            str(c["pass"]),
            f"[red]{c['fail']}[/]" if c["fail"] else "0",
            str(c["undetermined"]),
            str(c["not_applicable"]),
        )
    console.print(table)
    lat = [v.latency_ms["end_to_verdict"] for v in verdicts if "end_to_verdict" in v.latency_ms]
    if lat:
        console.print(
            f"end of turn → verdict: median {statistics.median(lat):.0f} ms, max {max(lat):.0f} ms"
        )
    console.print(
        f"evidence: {settings.evidence_url} (call {call_id}); export with "
        f"`cxguard evidence export --evidence {settings.evidence_url} --call {call_id}`"
    )
