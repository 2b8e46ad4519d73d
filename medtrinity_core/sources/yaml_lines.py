"""Safe YAML loading that remembers the line of every mapping key, so errors can name file, line and key."""

from __future__ import annotations

import yaml


class LineDict(dict):
    """A mapping from the YAML file; `.lines[key]` is the 1-based line of that key, `.line` its own."""

    line: int = 0
    lines: dict

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class DuplicateKey(Exception):
    """A mapping names one key twice: YAML would silently keep the last value."""

    def __init__(self, line: int, key: str, first: int):
        self.line, self.key, self.first = line, key, first
        super().__init__(f"duplicate key (first at line {first}); YAML would silently keep this one")


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise DuplicateKey(key_node.start_mark.line + 1, str(key), result.lines[key])
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_with_lines(text: str):
    """Like `yaml.safe_load` (no arbitrary tags), but mappings are `LineDict`s."""
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader derives from SafeLoader
