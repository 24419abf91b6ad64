"""YAML that remembers where each value came from, for errors that name file:line.

PyYAML's ``safe_load`` forgets node positions and silently keeps the last of two equal keys.
This composes the node tree with the safe loader and builds plain Python values itself,
recording the line of every mapping key and sequence item by its path (``("tenants", 0,
"name")``), and refusing duplicate keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxguard.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LocatedYaml:
    data: Any
    source: str
    """How errors name the file (the path as given)."""
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Iterable[str | int]) -> int | None:
        """The line of ``loc``, or of its nearest ancestor that has one."""
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def where(self, loc: Iterable[str | int]) -> str:
        """``file:line`` (or just ``file`` for the document as a whole)."""
        line = self.line(loc)
        return f"{self.source}:{line}" if line is not None else self.source


def load_located(path: Path, source: str | None = None) -> LocatedYaml:
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {source}: {exc}") from None
    return parse_located(text, source)


def parse_located(text: str, source: str) -> LocatedYaml:
    loader = yaml.SafeLoader(text)
    lines: dict[Loc, int] = {}
    try:
        node = loader.get_single_node()
        data = None if node is None else _build(loader, node, (), lines, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return LocatedYaml(data, source, lines)


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: Loc, lines: dict[Loc, int], source: str
) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves "<<" merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConfigError(f"{source}:{line}: keys must be text, not {key!r}")
            if key in out:
                first = lines[(*path, key)]
                raise ConfigError(f"{source}:{line}: duplicate key {key!r} (first at line {first})")
            lines[(*path, key)] = line
            out[key] = _build(loader, value_node, (*path, key), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_build(loader, item, (*path, index), lines, source))
        return items
    return loader.construct_object(node, deep=True)
