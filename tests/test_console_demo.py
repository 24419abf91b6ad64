"""``cxguard demo --stay`` (what ``make demo`` runs): prints the console URL with its token
before the call, and keeps serving the console after the call until Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_the_console_url_and_keeps_it_useful_after_the_call(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"}
    env.pop("CXGUARD_CONSOLE_TOKEN", None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "cxguard.cli", "demo", "--fast", "--stay", "--evidence",
         f"sqlite:///{tmp_path / 'demo.db'}"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not any("Ctrl-C to stop" in line for line in lines):
            assert time.monotonic() < deadline and demo.poll() is None, "".join(lines)
            lines.append(demo.stdout.readline())
        out = "".join(lines)
        url = re.search(r"http://127\.0\.0\.1:\d+/console\?token=[\w-]+", out)
        assert url, out
        assert out.index("console?token=") < out.index("Violations by assertion")
        api = url.group(0).replace("/console?", "/console/api/snapshot?")
        with urllib.request.urlopen(api, timeout=10) as reply:
            snap = json.load(reply)
        (call,) = snap["calls"]
        assert not call["live"] and call["turns"]
        assert {a["assertion"] for a in snap["alerts"]} >= {"billing.closure_escalation"}
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    assert demo.returncode == 0
