"""YAML with line numbers, and pydantic errors turned into ``file:line: message``.

PyYAML's safe loader forgets where things were; this one builds :class:`LineDict` /
:class:`LineList` (plain ``dict``/``list`` subclasses, so pydantic validates them as usual) that
remember the line of every key and item. A validation error's ``loc`` path is then walked
through the raw document to find the line to blame. Duplicate keys, which PyYAML silently
overwrites, are an error here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cxguard.errors import PolicyError


class LineDict(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: _Loader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=False)
        line = key_node.start_mark.line + 1
        try:
            duplicate = key in data
        except TypeError:
            raise _YamlProblem(line, f"unhashable mapping key {key!r}") from None
        if duplicate:
            raise _YamlProblem(line, f"duplicate key {key!r} (first on line {data.key_lines[key]})")
        data[key] = loader.construct_object(value_node, deep=False)
        data.key_lines[key] = line


def _seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield data
    data.extend(loader.construct_object(child, deep=False) for child in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _seq)


class _YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; syntax errors become ``PolicyError("source:line: ...")``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except _YamlProblem as exc:
        raise PolicyError(f"{source}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise PolicyError(f"{source}:{line}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}:1: YAML error: {exc}") from None


def line_of(node: Any, key: Any = None) -> int:
    """The line of ``node`` (or of ``node[key]``'s key / item) when it was loaded here."""
    if isinstance(node, LineDict):
        return node.key_lines.get(key, node.line) if key is not None else node.line
    if isinstance(node, LineList):
        if isinstance(key, int) and 0 <= key < len(node.item_lines):
            return node.item_lines[key]
        return node.line
    return 1


def _describe(err: ErrorDetails, field: str) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    tag = str(ctx.get("discriminator", "kind")).strip("'")
    if kind == "union_tag_invalid":
        return f"unknown {tag} {ctx.get('tag')!r} (expected {ctx.get('expected_tags', '')})"
    if kind == "union_tag_not_found":
        return f"missing {tag!r}"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}"
    if kind == "missing":
        return f"missing field {field!r}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def _locate(
    root: Any, loc: Sequence[int | str], key_error: bool
) -> tuple[int, str, list[str], Any]:
    """Walk ``loc`` through the raw document: (line, assertion context, field path, node)."""
    node, line, context, path = root, line_of(root), "", []
    for depth, part in enumerate(loc):
        if isinstance(node, LineDict) and part in node:
            line, node = line_of(node, part), node[part]
            path.append(str(part))
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line, node = line_of(node, part), node[part]
            if depth == 1 and loc[0] == "assertions":
                ident = node.get("id") if isinstance(node, dict) else None
                context, path = (f"assertion {ident!r}: " if ident else f"assertion #{part}: "), []
            else:
                path.append(f"[{part}]")
        elif key_error and depth == len(loc) - 1:
            path.append(str(part))  # a missing or unknown key: blame the mapping holding it
        # anything else is a union tag pydantic put into loc: not in the document
    return line, context, path, node


def format_validation_error(exc: ValidationError, root: Any, source: str) -> PolicyError:
    """One ``source:line: context: message`` line per problem, in document order."""
    lines: dict[tuple[int, str], None] = {}
    for err in exc.errors():
        key_error = err["type"] in ("extra_forbidden", "missing")
        line, context, path, node = _locate(root, err["loc"], key_error)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            line = line_of(node, "kind")
        where = ".".join(path[:-1] if key_error else path).replace(".[", "[")
        message = _describe(err, path[-1] if key_error and path else where)
        if key_error and where:
            message = f"{where}: {message}"
        lines[(line, f"{source}:{line}: {context}{message}")] = None
    return PolicyError("\n".join(text for _, text in sorted(lines)))
