"""Safe YAML loading that remembers where every value came from.

pydantic reports a bad value by its path (`sections.tone`); users need a line number.
We compose the YAML node tree once (safe loader, no tags that run code) and walk it
along the error's path to find the line and column of the offending value.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import re

import yaml

from ..errors import SpecError


class SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 also reads yes/no/on/off as booleans, which would silently turn labels named
    `yes` and `no` into `True` and `False`.
    """


SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SafeLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML mapping plus its node tree, for locating values by path."""

    path: Path
    data: dict[str, Any]
    root: yaml.Node

    def locate(self, loc: tuple[str | int, ...]) -> tuple[int, int]:
        """1-based (line, column) of the deepest node found along `loc`."""
        node = self.root
        for key in loc:
            child = _child(node, key)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1, node.start_mark.column + 1


def _child(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if str(k.value) == str(key):
                return v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


MAX_VALUES = 100_000  # values a spec file may expand to, aliases followed


def _check_duplicate_keys(node: yaml.Node, path: Path, seen_nodes: set[int] | None = None) -> None:
    """PyYAML silently keeps the last of two equal keys; a typo'd copy would vanish. Each node is checked once,
    however many aliases point at it."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for k, v in node.value:
            if str(k.value) in keys:
                raise SpecError(f"duplicate key '{k.value}'", path=str(path),
                                line=k.start_mark.line + 1, column=k.start_mark.column + 1)
            keys.add(str(k.value))
            _check_duplicate_keys(v, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _check_duplicate_keys(v, path, seen_nodes)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the document holds once its aliases are expanded (counted without expanding them)."""
    if id(node) not in sizes:
        children = ([v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def load_yaml(path: str | Path) -> YamlDoc:
    """Read a YAML file that must hold one mapping; malformed YAML names line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read file: {exc}", path=str(path)) from None
    try:
        root = yaml.compose(text, Loader=SafeLoader)
        data = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(f"malformed YAML: {problem}", path=str(path), line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"malformed YAML: {exc}", path=str(path)) from None
    if not isinstance(data, dict) or root is None:
        raise SpecError("expected a YAML mapping (key: value pairs) at the top level", path=str(path), line=1)
    size = _expanded_size(root, {})
    if size > MAX_VALUES:
        raise SpecError(f"the file expands to {size:,} values through its aliases (&anchors and *references); "
                        f"spec files may hold at most {MAX_VALUES:,}", path=str(path))
    _check_duplicate_keys(root, path)
    return YamlDoc(path=path, data=data, root=root)
