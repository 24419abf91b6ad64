"""HTML to PDF with a real browser engine: headless Chromium's print-to-PDF.

The governance report's HTML is self-contained (inline CSS and SVG), so the browser loads
nothing but the file. Chromium gets its own throwaway profile directory and no sandbox (it
commonly runs as root in containers); a missing browser or a failed print is a
:class:`~cxguard.errors.ConfigError` naming what to install.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from cxguard.errors import ConfigError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(explicit: str | None = None) -> str:
    for name in (explicit,) if explicit else BROWSERS:
        found = shutil.which(name) if name else None
        if found:
            return found
    raise ConfigError(
        "PDF needs Chromium (Debian: apt-get install chromium), or --browser PATH; "
        "--format html gives the same report without it"
    )


def html_to_pdf(
    page: str, out: Path, *, browser: str | None = None, timeout_s: float = 120.0
) -> None:
    exe = find_browser(browser)
    with tempfile.TemporaryDirectory(prefix="cxguard-pdf-") as tmp:
        source = Path(tmp) / "report.html"
        source.write_text(page, encoding="utf-8")
        target = Path(tmp) / "report.pdf"
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--no-first-run",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={target}",
            source.as_uri(),
        ]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"{exe} could not print the report: {exc}") from exc
        if done.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
            tail = " ".join(done.stderr.split()[-30:])
            raise ConfigError(f"{exe} did not print the report (exit {done.returncode}): {tail}")
        shutil.copyfile(target, out)
