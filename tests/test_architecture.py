"""The rooms of DESIGN.md stay true: lower rooms import only model/errors of cxguard, and the
ground-floor ``pii`` room, which policy, evidence and sinks share (runtime imports anything)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cxguard"
ROOMS = ("protocols", "audio", "asr", "policy", "sinks", "evidence", "pii")
SHARED = {"cxguard", "cxguard.model", "cxguard.errors"}
GROUND_FLOOR = {"pii": ("policy", "evidence", "sinks", "runtime")}
"""Rooms every room may not import: each names the rooms that may (runtime may import all)."""
SERVERS = {"asyncio", "websockets"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _ground_floor_door(room: str, name: str) -> bool:
    return any(
        (name == f"cxguard.{below}" or name.startswith(f"cxguard.{below}.")) and room in users
        for below, users in GROUND_FLOOR.items()
    )


def test_only_the_named_rooms_import_the_ground_floor() -> None:
    offenders = [
        f"{p.relative_to(PACKAGE)} imports {n}"
        for p in sorted(PACKAGE.rglob("*.py"))
        for n in _imports(p)
        for below, users in GROUND_FLOOR.items()
        if (n == f"cxguard.{below}" or n.startswith(f"cxguard.{below}."))
        and p.relative_to(PACKAGE).parts[0] not in (*users, below, "cli.py", "integrations")
    ]
    assert offenders == []
    assert _ground_floor_door("policy", "cxguard.pii")
    assert not _ground_floor_door("protocols", "cxguard.pii")
    assert not _ground_floor_door("pii", "cxguard.policy")


@pytest.mark.parametrize("room", ROOMS)
def test_room_imports_only_shared_types(room: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        for name in _imports(path):
            if not name.startswith("cxguard"):
                continue
            own = name == f"cxguard.{room}" or name.startswith(f"cxguard.{room}.")
            if not own and name not in SHARED and not _ground_floor_door(room, name):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


@pytest.mark.parametrize("room", ("protocols", "audio", "policy", "evidence", "pii"))
def test_pure_rooms_run_no_servers(room: str) -> None:
    offenders = [
        f"{p.relative_to(PACKAGE)} imports {n}"
        for p in sorted((PACKAGE / room).rglob("*.py"))
        for n in _imports(p)
        if n.split(".")[0] in SERVERS
    ]
    assert offenders == []


def test_architecture_scan_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from cxguard.asr import transcriber\nimport asyncio\n", encoding="utf-8")
    assert _imports(bad) == {"cxguard.asr", "asyncio"}


def test_integrations_use_only_the_policy_room() -> None:
    allowed = SHARED | {"cxguard.policy", "cxguard.pii"}
    offenders = [
        f"{p.relative_to(PACKAGE)} imports {n}"
        for p in sorted((PACKAGE / "integrations").rglob("*.py"))
        for n in _imports(p)
        if n.startswith("cxguard")
        and n not in allowed
        and not n.startswith("cxguard.policy.")
        and not n.startswith("cxguard.integrations")
    ]
    assert offenders == []
