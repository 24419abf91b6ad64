"""AsrOptions: validated once, and the turn window follows what was measured per model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cxguard.asr import AsrOptions, Decode
from cxguard.asr.options import usable_cpus
from cxguard.errors import ConfigError


def test_defaults_are_the_measured_choice() -> None:
    opts = AsrOptions()
    assert (opts.model, opts.window, opts.beam_size, opts.language) == ("tiny.en", "turn", 1, "en")
    assert opts.effective_min_window_s == 10.0
    assert (opts.padding, opts.no_repeat_ngram_size) == ("zeros", 0)
    assert opts.fallbacks == ("turn-b5", "full-b5")
    assert opts.fallback_model == "auto"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("turn-b5", Decode("turn", 5)),
        ("full-b1", Decode("full", 1)),
        ("full-t0.4", Decode("full", 1, 0.4)),
        ("turn-t1", Decode("turn", 1, 1.0)),
        ("fallback:full-b5", Decode("full", 5, 0.0, True)),
    ],
)
def test_decode_names_round_trip(name: str, expected: Decode) -> None:
    assert Decode.parse(name) == expected
    assert Decode.parse(expected.name) == expected


def test_turn_window_is_not_shortened_for_models_not_measured() -> None:
    assert AsrOptions(model="base").effective_min_window_s == 30.0
    assert AsrOptions(model="/models/whisper-small").effective_min_window_s == 30.0
    assert AsrOptions(model="base", min_window_s=12).effective_min_window_s == 12.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": "sliding"}, "window must be 'turn' or 'full'"),
        ({"padding": "noise"}, "padding must be 'silence' or 'zeros'"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"beam_size": 0}, "beam_size"),
        ({"max_turn_s": 45}, "max_turn_s"),
        ({"min_window_s": 0.5}, "min_window_s"),
        ({"num_workers": 0}, "num_workers"),
        ({"fallbacks": ("full-b5", "beam-5")}, "decode strategy 'beam-5'"),
        ({"fallbacks": ("turn-t2",)}, "decode strategy 'turn-t2'"),
        ({"fallbacks": ("full-b0",)}, "beam must be 1..16"),
        ({"agree_logprob": 1.5}, "agree_logprob is an average log-probability"),
    ],
)
def test_invalid_options_are_config_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AsrOptions(**changes)


@pytest.mark.parametrize(
    ("cpus", "workers", "threads"),
    [(1, 1, 1), (2, 1, 1), (2, 2, 1), (4, 1, 3), (8, 1, 4), (8, 2, 3), (16, 4, 3), (64, 1, 4)],
)
def test_auto_threads_leave_a_core_to_the_event_loop(cpus: int, workers: int, threads: int) -> None:
    # On 2 cores CTranslate2's own thread count made each decode 2-3x slower while the event
    # loop streamed calls (benchmarks/README.md), so 0 means: the cores less one, shared.
    assert AsrOptions(num_workers=workers).threads_per_decode(cpus) == threads
    assert AsrOptions(cpu_threads=6, num_workers=workers).threads_per_decode(cpus) == 6


def test_auto_threads_read_the_cores_this_process_may_use() -> None:
    assert AsrOptions().threads_per_decode() == max(1, min(4, usable_cpus() - 1))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("200000 100000\n", 2), ("150000 100000\n", 1), ("max 100000\n", None), ("junk", None)],
)
def test_a_cgroup_cpu_quota_caps_the_usable_cores(
    tmp_path: Path, cpu_max: str, expected: int | None
) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max)
    want = affinity if expected is None else min(affinity, expected)
    assert usable_cpus(str(quota)) == want
    assert usable_cpus(str(tmp_path / "absent")) == affinity
