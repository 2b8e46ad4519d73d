"""Safe YAML loading that remembers the line of every mapping key, so errors can name file, line and key."""

from __future__ import annotations

import re

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


class AliasBomb(Exception):
    """Aliases that expand to more nodes than a sources file could mean (a "billion laughs" document),
    or an alias inside its own anchor."""

    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(message)


MAX_EXPANDED_NODES = 100_000  # the bundled demo's file is about 400 nodes; nine nested aliases of nine make 387 million
BOOLEAN = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader, with YAML 1.2's booleans: bare `true`/`false` only. YAML 1.1's `yes`, `no`, `on`, `off`
    are strings here, so a typed key refuses them instead of reading `no` as false and `'no'` as true."""


_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver("tag:yaml.org,2002:bool", BOOLEAN, list("tTfF"))


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


def _check_expansion(root: yaml.Node) -> None:
    """Counts the nodes the document expands to, each alias counted as a copy of its anchor (memoized per
    node, so the count itself is cheap); refuses more than MAX_EXPANDED_NODES and recursive aliases."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise AliasBomb(node.start_mark.line + 1, "an alias refers to the mapping or list that contains it (a recursive document)")
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise AliasBomb(node.start_mark.line + 1, f"aliases expand this node to more than {MAX_EXPANDED_NODES:,} values "
                            "(an alias bomb?); a sources file needs far fewer: write the values out or use fewer nested aliases")
        sizes[key] = total
        return total

    size(root)


def load_with_lines(text: str):
    """Like `yaml.safe_load` (no arbitrary tags), but mappings are `LineDict`s, booleans are YAML 1.2's,
    and a document whose aliases expand beyond MAX_EXPANDED_NODES is refused before it is built."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
