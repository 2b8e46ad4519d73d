"""The sources file's path patterns (`images`, mask and label templates): refused when their shape is
known to backtrack without end, and matched under a time bound otherwise.

A regular expression such as `(a+)+$` takes time exponential in the length of a name it fails on: over
file names of 30 a's, Python's `re` never returns. Two guards:

- `backtracking_problem` refuses, when the sources file is read, the shapes that always backtrack
  catastrophically: a repeated group whose body is itself a variable repeat (`(a+)+`, `(\\w*)*`,
  `(?:.+)+`; a possessive inner repeat `(a++)+` gives nothing back and is fine) and a repeated
  alternation with two identical branches (`(a|a)*`); and counted repeats nested so deep that the
  `regex` module, which expands them when it compiles, would need gigabytes (more than MAX_COPIES). Patterns users write for
  folders (`(?:[^/]+/)*`) and backreferences to a group (`(?P=id)`) stay allowed.
- `compile_pattern` compiles with the `regex` module, whose matches take a `timeout`: any other pattern
  that backtracks on some name raises `PatternTimeout`, one line naming the source, the key and the
  name's length, instead of hanging the scan; so does a scan whose slow matches (each under the bound)
  add up to SCAN_BUDGET_S.
"""

from __future__ import annotations

import re
import time

from medtrinity_core.errors import UsageError

MATCH_TIMEOUT_S = 0.5  # a path's match takes microseconds; this bounds a pattern that backtracks on one name
SLOW_MATCH_S = 0.01  # ...and a match this slow is already a thousand times too slow:
SCAN_BUDGET_S = 2.0  # a scan whose slow matches add up to this stops, however many names each stays under the bound
MAX_COPIES = 100_000  # counted repeats nested in counted repeats (`(?:(?:a{1000}){1000}){1000}`) expand to this many copies at most


class PatternTimeout(UsageError):
    """A path pattern that took longer than MATCH_TIMEOUT_S on one name (exit code 2, a bad sources file)."""


def _fields_filled(template: str) -> str:
    """A mask or label template with its `{field}`s made literal and `{{`/`}}` unescaped: a plain regex.
    (A count such as `{64}` in an `images` pattern is no field and stays as it is.)"""
    return re.sub(r"\{\{|\}\}|\{[A-Za-z_]\w*\}", lambda m: {"{{": "{", "}}": "}"}.get(m.group(0), "x"), template)


def backtracking_problem(pattern: str) -> str | None:
    """Why a pattern (or template) is refused as catastrophically backtracking, or None."""
    from re import _constants as c  # the parser `re` itself uses (Python 3.11)
    from re import _parser

    try:
        tree = _parser.parse(_fields_filled(pattern))
    except (re.error, ValueError, RecursionError):
        return None  # invalid patterns are reported by the compile check
    repeats = {c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT}

    def body_of(items):
        """A group's content without the group wrappers: `((a+))` is `a+`."""
        items = list(items)
        while len(items) == 1 and items[0][0] == c.SUBPATTERN:
            items = list(items[0][1][-1])
        return items

    def walk(items, copies: int = 1) -> str | None:
        for op, av in items:
            if op in repeats:
                low, high, sub = av
                body = body_of(sub)
                if high > 1 and len(body) == 1 and body[0][0] in (c.MAX_REPEAT, c.MIN_REPEAT) and body[0][1][0] != body[0][1][1]:
                    return "a repeated group whose body is itself a variable repeat (like `(a+)+`)"
                inner = copies * max(low, high if high != c.MAXREPEAT else low, 1)
                if inner > MAX_COPIES:
                    return f"counted repeats nested in counted repeats (about {inner:,} copies to compile)"
                if high > 1 and len(body) == 1 and body[0][0] == c.BRANCH:
                    branches = [str(b) for b in body[0][1][1]]
                    if len(set(branches)) < len(branches):
                        return "a repeated alternation with two identical branches (like `(a|a)*`)"
                found = walk(sub, inner)
            elif op == c.SUBPATTERN:
                found = walk(av[-1], copies)
            elif op == c.BRANCH:
                found = next((f for b in av[1] if (f := walk(b, copies))), None)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                found = walk(av[1], copies)
            elif op == c.ATOMIC_GROUP:
                found = walk(av, copies)
            elif op == c.GROUPREF_EXISTS:
                found = walk(av[1], copies) or (walk(av[2], copies) if av[2] else None)
            else:
                found = None
            if found:
                return found
        return None

    found = walk(tree)
    if found and found.startswith("counted"):
        return f"{found} would take gigabytes to compile; write fewer nested counts"
    return f"{found} backtracks without end on a name it does not match; rewrite it without the nested repeat" if found else None


class Pattern:
    """A compiled path pattern whose `fullmatch` is bounded in time; `where` names it in errors."""

    def __init__(self, pattern: str, where: str, shown: str | None = None):
        """`shown`: what errors print instead of the pattern (a template filled in from a path holds that
        path's values, which may identify a patient)."""
        import regex

        self.pattern, self.where, self.shown = pattern, where, shown if shown is not None else pattern
        problem = backtracking_problem(pattern)  # a template filled in from an image's match is checked here, as the file's own were
        if problem:
            raise PatternTimeout(f"{where}: pattern {self.shown!r} is refused: {problem}")
        self._compiled = regex.compile(pattern)
        self.groupindex = self._compiled.groupindex
        self.slow_s, self.slow_names = 0.0, 0

    def fullmatch(self, name: str, partial: bool = False):
        start = time.perf_counter()
        try:
            found = self._compiled.fullmatch(name, timeout=MATCH_TIMEOUT_S, partial=partial)
        except TimeoutError:
            raise PatternTimeout(f"{self.where}: pattern {self.shown!r} took more than {MATCH_TIMEOUT_S} s on a {len(name)}-character name "
                                 "(catastrophic backtracking): rewrite it without nested or overlapping repeats") from None
        spent = time.perf_counter() - start
        if spent > SLOW_MATCH_S:
            self.slow_s, self.slow_names = self.slow_s + spent, self.slow_names + 1
            if self.slow_s > SCAN_BUDGET_S:
                raise PatternTimeout(f"{self.where}: pattern {self.shown!r} took {self.slow_s:.1f} s over {self.slow_names} names, each more than "
                                     f"{SLOW_MATCH_S} s (a path takes microseconds: it backtracks): rewrite it without nested or overlapping repeats")
        return found


def compile_pattern(pattern: str, where: str, shown: str | None = None) -> Pattern:
    """`where` is what a person reads, e.g. `source kvasir-seg: images`; `shown` what errors print of the
    pattern (default: the pattern)."""
    return Pattern(pattern, where, shown)


def images_pattern(source) -> Pattern:
    """A source's `images` pattern, bounded in time, named in errors by the source."""
    return compile_pattern(source.images, f"source {source.name}: images")
