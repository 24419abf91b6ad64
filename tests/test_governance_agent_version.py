"""The agent's version as part of the release, through a real sidecar and websocket: the
Twilio ``agent_version`` custom parameter names the release of a call's first verdicts, and
a ``cxguard.agent_version=…`` mark mid-call moves later verdicts to the new release; each
release is recorded once, with the pack's framework. (Speech is scripted: the release is
what is tested, not the words.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cxguard.evidence import EvidenceLedger
from cxguard.evidence.engine import LedgerOptions
from cxguard.model import Release, Transcript
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import load_tracks, play
from cxguard.simulate.twilio import TwilioClient

SWITCH_AT_FRAME = 1500  # 30 s into the call


def _scripted(
    items: Sequence[np.ndarray], *, on_done: Callable[[int, object], None] | None = None
) -> list[Transcript]:
    return [Transcript("Hi, I'm an automated assistant.", "scripted") for _ in items]


class _Upgrading(TwilioClient):
    """Twilio's side, sending the platform's mark that the agent was upgraded mid-call."""

    frames = 0

    def send_audio(self, customer: bytes, agent: bytes) -> None:
        if self.frames == SWITCH_AT_FRAME:
            self.send_mark("cxguard.agent_version=v2")
        self.frames += 1
        super().send_audio(customer, agent)


async def test_agent_version_parameter_and_mid_call_change(tmp_path: Path) -> None:
    tenant = f"ver{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    services = await Services.start(
        Settings(port=0, evidence_url=url), transcribe_batch=_scripted, model_id="scripted"
    )
    agent, customer = demo_audio()
    agent_ulaw, customer_ulaw = load_tracks(agent, customer)
    client = _Upgrading(custom_parameters={"tenant": tenant, "agent_version": "v1"})
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            played = await play(
                f"ws://127.0.0.1:{port}/twilio", client, customer_ulaw, agent_ulaw, fast=True
            )
            assert played.close_code == 1000
            await side.drain()
        model_ids = dict(services.model_ids)
        pack_hash = services.engine_pack_hash
    finally:
        await services.close()

    v1 = Release(pack_hash, model_ids, "v1").id
    v2 = Release(pack_hash, model_ids, "v2").id
    with EvidenceLedger(url, LedgerOptions(read_only=True)) as led:
        rows = list(led.export(tenant=tenant))
        releases = led.findings(tenant, "release")
        marks = led.events(tenant=tenant, kind="control.agent_version")
        assert led.verify(tenant=tenant).ok
    switch_ms = 1000 * SWITCH_AT_FRAME * 0.02
    assert marks and marks[0]["data"] == {"agent_version": "v2"}
    before = {r["release_id"] for r in rows if r["end"] * 1000 < switch_ms - 2000}
    after = {r["release_id"] for r in rows if r["start"] * 1000 > switch_ms + 2000}
    assert before == {v1} and after == {v2}
    assert {r["agent_version"] for r in rows} == {"v1", "v2"}
    assert sorted(f["data"]["agent_version"] for f in releases) == ["v1", "v2"]
    assert {f["data"]["release_id"] for f in releases} == {v1, v2}
    assert releases[0]["data"]["policy"]["assertions"]
