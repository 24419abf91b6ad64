"""`cxguard evidence report` on the bundled demo call's ledger (real Whisper, real sidecar):
Markdown, JSON, self-contained HTML opened in headless Chromium, and a PDF printed by
Chromium whose pages are rendered to PNG (pdftoppm) and read back (pdftotext). Reading the
ledger for a report writes nothing."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.evidence.rows import event_op

CLI = [sys.executable, "-m", "cxguard.cli"]
NOTE = "Greeting script fixed in agent v1.3"
ACK = "Coaching booked for the promise"


def _run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo call streamed through a real sidecar, with a note on its disclosure miss."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    url = f"sqlite:///{db}"
    _run("demo", "--fast", "--evidence", url)
    rows = [
        json.loads(line)
        for line in _run("evidence", "export", "--evidence", url).stdout.splitlines()
    ]
    miss = next(
        r for r in rows if r["assertion"] == "disclosure.ai_identifies" and r["verdict"] == "fail"
    )
    _run(
        "evidence",
        "note",
        "--evidence",
        url,
        "--tenant",
        miss["tenant"],
        "--call",
        miss["call_id"],
        "--turn",
        str(miss["turn"]),
        "--assertion",
        miss["assertion"],
        "--text",
        NOTE,
        "--by",
        "QA lead",
    )
    # A supervisor acknowledged another violation on /console (as the console hub records it).
    other = next(r for r in rows if r["verdict"] == "fail" and r["assertion"] != miss["assertion"])
    ack = {
        "action": "acknowledge",
        "alert_id": "a1",
        "assertion": other["assertion"],
        "turn": other["turn"],
        "by": "supervisor Ana",
        "via": "console",
        "note": ACK,
    }
    op = event_op(other["call_id"], other["tenant"], "console.acknowledge", None, ack)
    with EvidenceLedger(url) as ledger:
        ledger.apply([op])
    return db, url


def _report(url: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run("evidence", "report", "--evidence", url, *args)


def test_markdown_and_json_hold_every_section(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, url = demo
    before = _digest(db)
    md = _report(url).stdout
    for heading in (
        "evaluation framework",
        "Releases in force",
        "coverage",
        "pass rates",
        "Per intent",
        "AI disclosure",
        "violations",
        "shadow assertions",
        "drift and release changes",
        "chain and key verification",
        "Retention",
        "Mapping to record-keeping duties",
    ):
        assert heading in md, heading
    assert "Hash chain intact" in md and NOTE in md
    for duty in (
        "EU AI Act Art. 12",
        "EU AI Act Art. 50(1)",
        "NIST AI RMF MEASURE 2.4",
        "NIST AI RMF MANAGE 4.1",
        "PCI DSS 3.3.1",
        "PCI DSS 3.4.1",
        "PCI DSS 10.5.1",
    ):
        assert duty in md
    assert "[CARD]" in md and not re.search(r"\d{13,}", md)

    _report(url, "--format", "json", "--out", tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    (tenant,) = doc["tenants"]
    assert tenant["coverage"]["calls"] == 1 and tenant["coverage"]["calls_without_verdicts"] == []
    assert tenant["violations"]["total"] == 6
    (release,) = tenant["framework"]["releases"]
    assert release["recorded"] and release["model_ids"]["asr"]
    assert {a["id"] for a in tenant["framework"]["packs"][0]["assertions"]} >= {
        "disclosure.ai_identifies"
    }
    noted = [v for v in tenant["violations"]["shown"] if v["notes"]]
    assert sorted(n["text"] for v in noted for n in v["notes"]) == sorted([NOTE, ACK])
    acked = next(v for v in noted if v["notes"][0]["text"] == ACK)
    assert acked["notes"][0]["kind"] == "ack" and acked["notes"][0]["by"] == "supervisor Ana"
    assert ACK in md
    # A period before the call holds nothing.
    early = _report(url, "--format", "json", "--until", "2000-01-01").stdout
    assert json.loads(early)["tenants"][0]["coverage"]["verdicts"] == 0
    assert _digest(db) == before  # reading writes nothing


def test_html_is_self_contained_and_opens_in_chromium(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    db, url = demo
    before = _digest(db)
    page = tmp_path / "r.html"
    _report(url, "--format", "html", "--out", page)
    text = page.read_text()
    assert "<script" not in text and "<link" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert "<svg" in text and NOTE in text
    chromium = shutil.which("chromium")
    assert chromium, "Debian chromium is part of the test environment"
    common = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert "Mapping to record-keeping duties" in dom and "<polyline" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as image:
        colours = image.convert("L").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 10  # text and tables drawn, not a blank page
    assert _digest(db) == before


def test_pdf_pages_render_and_show_framework_violations_and_chain(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    db, url = demo
    before = _digest(db)
    pdf = tmp_path / "r.pdf"
    _report(url, "--format", "pdf", "--out", pdf)
    assert pdf.read_bytes().startswith(b"%PDF-")
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    for png in pages:
        with Image.open(png) as image:
            assert image.width > 300 and len(image.convert("L").getcolors(1 << 16) or ()) > 5
    words = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    words = " ".join(words.split())
    assert "evaluation framework" in words and "disclosure.ai_identifies" in words
    assert "violations" in words and "I guarantee you will get" in words
    assert "Hash chain intact" in words and "PCI DSS 10.5.1" in words
    assert _digest(db) == before


def test_a_tampered_ledger_reports_a_broken_chain(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = demo
    copy = tmp_path / "copy.db"
    shutil.copyfile(db, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE verdicts SET outcome = 'pass' WHERE outcome = 'fail'")
    md = _report(f"sqlite:///{copy}").stdout
    assert "Hash chain BROKEN" in md
    assert (
        _run(
            "evidence", "report", "--format", "pdf", "--evidence", f"sqlite:///{copy}", check=False
        ).returncode
        == 2
    )  # pdf needs --out
