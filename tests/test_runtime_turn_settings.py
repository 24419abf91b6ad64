"""``turns:`` settings reach the judge; nonsense values are configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxguard.errors import ConfigError
from cxguard.policy.turns import TurnOptions
from cxguard.runtime.settings import load_settings


def test_turn_settings_load_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("turns:\n  end_silence_ms: 1200\n  handoff_grace_ms: 500\n")
    options = load_settings(path).turns.options()
    assert options == TurnOptions(end_silence_ms=1200, handoff_grace_ms=500)
    assert load_settings().turns.options() == TurnOptions()


def test_negative_durations_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("turns:\n  handoff_grace_ms: -1\n")
    with pytest.raises(ConfigError, match="turn durations must not be negative"):
        load_settings(path)
