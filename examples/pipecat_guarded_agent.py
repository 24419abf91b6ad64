"""A Pipecat pipeline guarded by cxguard, runnable offline (no STT, LLM or TTS service).

    python examples/pipecat_guarded_agent.py                 # enforce mode
    python examples/pipecat_guarded_agent.py --mode observe  # report only

The pipeline is ``ScriptedLLM → PolicyGuard → SpokenLog``:

* ``ScriptedLLM`` stands in for the user aggregator + LLM: for each caller line it sends the
  ``LLMContextUserTurnFrame`` a user aggregator would, then a scripted reply as streamed
  ``LLMTextFrame`` tokens between ``LLMFullResponseStartFrame`` / ``LLMFullResponseEndFrame``;
* ``PolicyGuard`` judges both sides with the bundled billing pack;
* ``SpokenLog`` stands where the TTS service would be and prints what would be spoken.

In a real bot the guard goes between the LLM and the TTS service::

    Pipeline([transport.input(), stt, user_aggregator, llm,
              PolicyGuard(engine, GuardOptions(call_id=..., tenant=...), on_report=...),
              tts, transport.output(), assistant_aggregator])

and the application reacts to :class:`CxguardHandoffFrame` (or ``GuardReport.handoff`` in
``on_report``), e.g. ``await WebhookHandoff(url, secret).send(report.handoff)``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings

from cxguard.integrations.pipecat import (
    CxguardHandoffFrame,
    GuardMode,
    GuardOptions,
    GuardReport,
    PolicyGuard,
)
from cxguard.policy.classifier import OnnxTextScorer
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.pack import default_pack_path, load_pack

with warnings.catch_warnings():  # pipecat 1.14 imports audioop (deprecated since 3.11)
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from loguru import logger
    from pipecat.frames.frames import (
        EndFrame,
        Frame,
        LLMContextUserTurnFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TextFrame,
        TranscriptionFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

# (caller line or None for the greeting, the LLM's reply)
SCRIPT: list[tuple[str | None, str]] = [
    (None, "Hello, I'm Sam, a virtual assistant for Northwind Energy billing. How can I help?"),
    ("Can I pay my bill in installments?",
     "Yes, we can set up a payment plan. You can pay half now and the rest next month."),
    ("To verify, my date of birth is March fourth, nineteen eighty.",
     "Thank you. I have verified your identity."),
    ("So can I get that payment plan?",
     "Yes. You can pay two hundred dollars now and the rest on the first of next month."),
    ("No. Actually, I want to close my account.",
     "Sure, I can close your account for you right now."),
]  # fmt: skip


class ScriptedLLM(FrameProcessor):
    """Answers each caller line (a TranscriptionFrame) with the next scripted reply."""

    def __init__(self) -> None:
        super().__init__()
        self._replies = iter(reply for _, reply in SCRIPT)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            if frame.text:  # the greeting is triggered by an empty line
                await self.push_frame(LLMContextUserTurnFrame(frame.text, frame.timestamp))
            await self.push_frame(LLMFullResponseStartFrame())
            for token in next(self._replies).split(" "):  # streamed like LLM tokens
                await self.push_frame(LLMTextFrame(token + " "))
            await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)


class SpokenLog(FrameProcessor):
    """Where the TTS service would be: prints each reply as it would be spoken."""

    def __init__(self) -> None:
        super().__init__()
        self._reply: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextUserTurnFrame):
            print(f"caller: {frame.text}")
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._reply = []
        elif isinstance(frame, TextFrame):
            self._reply.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            print(f"bot:    {''.join(self._reply).strip()}")
        elif isinstance(frame, CxguardHandoffFrame):
            print(f"        >> HANDOFF requested ({frame.request.assertion_id}): "
                  f"{frame.request.reason}")  # fmt: skip
        await self.push_frame(frame, direction)


def show(report: GuardReport) -> None:
    for v in report.verdicts:
        if v.outcome in ("fail", "undetermined"):
            what = "BLOCKED" if report.blocked else v.outcome.upper()
            print(f"        !! {what} {v.assertion_id} (turn {v.turn_index}): {v.evidence}")


async def main(mode: GuardMode) -> None:
    engine = PolicyEngine(load_pack(default_pack_path()), OnnxTextScorer())
    options = GuardOptions(mode=mode, call_id="demo-call", tenant="northwind",
                           parameters={"authenticated": "false"})  # fmt: skip
    guard = PolicyGuard(engine, options, on_report=show)
    worker = PipelineWorker(Pipeline([ScriptedLLM(), guard, SpokenLog()]),
                            cancel_on_idle_timeout=False)  # fmt: skip

    @worker.event_handler("on_pipeline_started")  # type: ignore[untyped-decorator]
    async def feed(worker: PipelineWorker, frame: Frame) -> None:
        lines = [line or "" for line, _ in SCRIPT]
        frames = [TranscriptionFrame(t, "caller", "2026-01-01T00:00:00Z") for t in lines]
        await worker.queue_frames([*frames, EndFrame()])

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["enforce", "observe"], default="enforce")
    args = parser.parse_args()
    logger.remove()  # pipecat logs every link and start at DEBUG
    logger.add(sys.stderr, level="WARNING")
    asyncio.run(main(args.mode))
