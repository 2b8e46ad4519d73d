"""Safe YAML loading that remembers the line of every mapping key, so errors can name file, line and key.

Scalars are read by YAML 1.2's core schema, not PyYAML's YAML 1.1 one: booleans are bare `true`/`false`
only (`yes`, `no`, `on`, `off` are strings, so a typed key refuses them instead of reading `no` as false
and `'no'` as true), integers are decimal only (`010` is ten, not eight), never
sexagesimal (`1:30` is a string, not 90), hexadecimal or octal (`0x1F` is a string) nor with `_`
separators, and dates stay strings. Explicit tags
are limited to the core ones (`!!str !!int !!float !!bool !!null !!seq !!map`): `!!bool yes`,
`!!timestamp`, `!!binary`, `!!set` and any `!!python/...` are refused naming their line. Aliases are
allowed up to MAX_EXPANDED_NODES values once expanded. Every refusal is a `YamlRefused` with a line.
"""

from __future__ import annotations

import re

import yaml

from medtrinity_core.errors import SourcesFileError

CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = {f"{CORE}{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}
MAX_EXPANDED_NODES = 100_000  # the bundled demo's file is about 400 nodes; nine nested aliases of nine make 387 million
MAX_INT_DIGITS = 30  # no setting needs more; Python refuses to read 4,300 digits at all
BOOLEAN = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
INTEGER = re.compile(r"^[-+]?[0-9]+$")
FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")  # what a string may not hold (tab and line breaks may)


BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
# What YAML cannot hold (its printable set, YAML 1.2 section 5.1): C0 and C1 controls but tab, LF, CR and
# NEL, the surrogates, U+FFFE and U+FFFF.
NOT_YAML = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _line_at(text: str) -> int:
    """The 1-based line that follows `text`, counting LF, CRLF and a lone CR as YAML does."""
    return text.count("\n") + text.count("\r") - text.count("\r\n") + 1


def decode_sources_text(file: str, data: bytes) -> str:
    """The file's text: UTF-8, with or without a byte-order mark, or UTF-16/32 with one. Anything else,
    and a NUL or any other character YAML cannot hold, is one error naming the line (and byte offset)."""
    encoding = next((enc for bom, enc in BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = _line_at(data[: exc.start].decode(encoding, errors="replace"))
        if encoding != "utf-8":
            raise SourcesFileError(file, line, "file", f"starts with a {encoding.upper()} byte-order mark but bytes at offset {exc.start} are not "
                                   f"{encoding.upper()}") from None
        hint = " (UTF-16 without a byte-order mark?)" if b"\x00" in data[:200] else " (Latin-1 or Windows-1252? save the file as UTF-8)"
        raise SourcesFileError(file, line, "file", f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8{hint}") from None
    bad = NOT_YAML.search(text)
    if bad:
        char = bad.group(0)
        what = "a NUL byte" if char == "\x00" else f"the character U+{ord(char):04X}, which YAML cannot hold"
        hint = " (UTF-16 without a byte-order mark?)" if char == "\x00" and encoding == "utf-8" and text.count("\x00") * 3 > len(text) else ""
        raise SourcesFileError(file, _line_at(text[: bad.start()]), "file", f"holds {what}{hint}; a sources file is text")
    return text


class LineDict(dict):
    """A mapping from the YAML file; `.lines[key]` is the 1-based line of that key, `.line` its own."""

    line: int = 0
    lines: dict

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class YamlRefused(Exception):
    """A document this loader will not build, with the 1-based line to name."""

    def __init__(self, line: int | None, message: str):
        self.line = line
        super().__init__(message)


class DuplicateKey(YamlRefused):
    """A mapping names one key twice: YAML would silently keep the last value. (A key that overrides
    one merged in with `<<: *anchor` is no duplicate.)"""

    def __init__(self, line: int, key: str, first: int):
        self.key, self.first = key, first
        super().__init__(line, f"duplicate key (first at line {first}); YAML would silently keep this one")


class AliasBomb(YamlRefused):
    """Aliases that expand to more nodes than a sources file could mean (a "billion laughs" document),
    or an alias inside its own anchor."""


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _LineLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and a count of the aliases it composed."""

    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        return super().compose_node(parent, index)


# Implicit resolvers: only null and merge kept from YAML 1.1, then the core schema's bool, int and float.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in (f"{CORE}null", f"{CORE}merge")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(f"{CORE}bool", BOOLEAN, list("tTfF"))
_LineLoader.add_implicit_resolver(f"{CORE}int", INTEGER, list("-+0123456789"))
_LineLoader.add_implicit_resolver(f"{CORE}float", FLOAT, list("-+0123456789."))


def _refuse(node: yaml.Node, message: str):
    raise YamlRefused(_line(node), message)


def _construct_bool(loader: _LineLoader, node: yaml.ScalarNode) -> bool:
    value = loader.construct_scalar(node)
    if not BOOLEAN.match(value):
        _refuse(node, f"{value!r} is not a boolean: write true or false")
    return value.lower() == "true"


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> int:
    value = loader.construct_scalar(node)
    if not INTEGER.match(value):
        _refuse(node, f"{value!r} is not a whole number")
    if len(value) > MAX_INT_DIGITS:
        _refuse(node, f"a number of {len(value)} digits is longer than any setting needs ({MAX_INT_DIGITS} at most)")
    return int(value, 10)


def _construct_float(loader: _LineLoader, node: yaml.ScalarNode) -> float:
    value = loader.construct_scalar(node)
    if not FLOAT.match(value) and not INTEGER.match(value):
        _refuse(node, f"{value!r} is not a number")
    if len(value) > 64:
        _refuse(node, f"a number of {len(value)} characters is longer than any setting needs")
    low = value.lower()
    return float(low.replace(".", "")) if low.lstrip("+-") in (".inf", ".nan") else float(value)


def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> str:
    value = loader.construct_scalar(node)
    bad = next((c for c in value if 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        _refuse(node, f"holds the lone surrogate \\u{ord(bad):04x}, which is no character (it cannot be written as UTF-8)")
    control = CONTROL.search(value)
    if control:  # written as an escape ("\0", "\x1b"): no setting, name or label holds one
        _refuse(node, f"holds the control character U+{ord(control.group(0)):04X} (written as an escape)")
    return value


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    explicit = sum(1 for key_node, _ in node.value if key_node.tag != f"{CORE}merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit  # flatten_mapping puts the merged pairs first
    result = LineDict()
    result.line = _line(node)
    result.lines = {}
    from_merge: set = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (dict, list)):
            _refuse(key_node, "a mapping key must be a plain value (a name or a number), not a mapping or a list")
        if key in result and key not in from_merge and i >= merged:
            raise DuplicateKey(_line(key_node), str(key), result.lines[key])
        if i < merged:
            from_merge.add(key)
        else:
            from_merge.discard(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = _line(key_node)
    return result


_LineLoader.add_constructor(f"{CORE}bool", _construct_bool)
_LineLoader.add_constructor(f"{CORE}int", _construct_int)
_LineLoader.add_constructor(f"{CORE}float", _construct_float)
_LineLoader.add_constructor(f"{CORE}str", _construct_str)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_nodes(root: yaml.Node, aliases: int) -> None:
    """Refuses tags beyond the core schema, recursive aliases, and (when the document has aliases) more
    than MAX_EXPANDED_NODES values once each alias is counted as a copy of its anchor (memoized per node,
    so the count itself is cheap)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise AliasBomb(_line(node), "an alias refers to the mapping or list that contains it (a recursive document)")
        if node.tag not in ALLOWED_TAGS:
            _refuse(node, f"the tag {node.tag.replace(CORE, '!!')} is not allowed: a sources file holds strings, numbers, booleans, lists and mappings")
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if aliases and total > MAX_EXPANDED_NODES:
            raise AliasBomb(_line(node), f"aliases expand this node to more than {MAX_EXPANDED_NODES:,} values "
                            "(an alias bomb?); a sources file needs far fewer: write the values out or use fewer nested aliases")
        sizes[key] = total
        return total

    size(root)


def load_with_lines(text: str):
    """Like `yaml.safe_load`, but mappings are `LineDict`s, scalars follow YAML 1.2's core schema, and a
    document with other tags or whose aliases expand beyond MAX_EXPANDED_NODES is refused before it is
    built. Raises `YamlRefused` (with its line) or PyYAML's own errors (with their mark)."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, loader.aliases)
        return loader.construct_document(node)
    finally:
        loader.dispose()
