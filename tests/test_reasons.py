"""The one table of quarantine reasons (`medtrinity_core/reasons.py`): no stage writes a reason as a
string literal, every reason the code can write is in the table, the README's table is the table,
and real bad files come out with a reason of the table at its stated stage."""

from __future__ import annotations

import ast
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

import medtrinity_core.reasons as reasons_module
from medtrinity_core.errors import ItemError
from medtrinity_core.quarantine import NOT_DATA, WITHDRAWN
from medtrinity_core.reasons import REASONS, STAGES, reason
from medtrinity_core.records import quarantine_row
from medtrinity_core.sources.schema import SourceConfig

from .conftest import REPO

CORE = REPO / "medtrinity_core"
# calls whose argument is a quarantine reason, with the argument's position
REASON_ARG = {"ItemError": 0, "quarantine_row": 4, "Rejected": 1, "_defect": 1, "held": 1}
# `reason` keys that are no quarantine reason: a mask dropped from an image's normalization record
# (`dropped_masks`), the image kept
NOT_QUARANTINE = {"lost_in_resize"}


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _strings(node: ast.AST | None) -> list[ast.Constant]:
    return [c for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)] if node is not None else []


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def reason_positions(text: str) -> list[tuple[int, str]]:
    """(line, value) of every string literal where the code names a quarantine reason: an argument of
    ItemError, quarantine_row, Rejected, `_defect` or `held` (its reason position, or a `reason=`
    keyword), a `"reason"` dict value, a value assigned to a name holding `reason` (tuples and
    conditional expressions included), a value compared with such a name, or an element of a tuple
    appended to discovery's `links` (rel, folder, reason, where)."""
    out = []
    for node in ast.walk(ast.parse(text)):
        found: list[ast.Constant] = []
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in REASON_ARG:
                pos = REASON_ARG[name]
                args = [node.args[pos]] if len(node.args) > pos else []
                args += [k.value for k in node.keywords if k.arg == "reason"]
                for a in args:  # a literal, or either branch of `"x" if ... else "y"` (an f-string's text is a detail)
                    found += [b for b in ([a.body, a.orelse] if isinstance(a, ast.IfExp) else [a]) if isinstance(b, ast.Constant) and isinstance(b.value, str)]
            if name == "append" and isinstance(node.func.value, ast.Name) and node.func.value.id == "links":
                found += [e for a in node.args if isinstance(a, ast.Tuple) and len(a.elts) > 2 for e in [a.elts[2]] if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.Dict):
            found += [c for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value == "reason" for c in _strings(v)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any("reason" in n.lower() for t in targets for n in _names(t)):
                value = node.value
                if isinstance(value, ast.Tuple):  # `reason, detail = "x", f"..."`: the reason is first
                    value = value.elts[0]
                if isinstance(value, ast.IfExp):
                    branches = [b.elts[0] if isinstance(b, ast.Tuple) else b for b in (value.body, value.orelse)]
                    found += [b for b in branches if isinstance(b, ast.Constant) and isinstance(b.value, str)]
                elif isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.append(value)
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Name) and "reason" in s.id.lower() for s in sides):
                found += [s for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)]
        out += [(c.lineno, c.value) for c in found]
    return sorted(set(out))


def literal_reasons(text: str) -> list[tuple[int, str]]:
    """The reason positions whose literal is a reason of the table: each should be its constant."""
    return [(line, value) for line, value in reason_positions(text) if value in REASONS]


def core_modules() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if p.name != "reasons.py")


# -- (a) no reason is a string literal outside reasons.py ----------------------------------------------

def test_the_scan_finds_reason_literals_in_every_form_it_knows():
    snippet = textwrap.dedent('''
        raise ItemError("empty_file", "0 bytes")
        quarantine_row(i, s, r, STAGE, "missing", detail)
        rows.append({"item_id": i, "reason": "taken_down", "detail": "asked"})
        Rejected(rel, "hidden_file", detail)
        reason = "truncated" if short else "unreadable"
        reason, detail = ("unreadable", str(exc)) if plain else (exc.reason, exc.detail)
        if reason == "symlink_loop":
            pass
        links.append((rel, True, "symlinked_folder", where))
        _defect(source, "empty_mask", detail, label, public, dropped)
        ItemError(reason="bad_annotation", detail="x")
        raise ItemError(EMPTY_FILE, f"{name} has zero bytes, e.g. 'missing'")
        quarantine_row(i, s, r, "raw", MISSING, "unreadable")
        severity(config, "empty_mask")
    ''')
    assert literal_reasons(snippet) == [(2, "empty_file"), (3, "missing"), (4, "taken_down"), (5, "hidden_file"), (6, "truncated"), (6, "unreadable"),
                                        (7, "unreadable"), (8, "symlink_loop"), (10, "symlinked_folder"), (11, "empty_mask"), (12, "bad_annotation")]
    # a stage name, a detail or a quality expectation's name that happens to equal a reason is no reason position
    assert literal_reasons("raise ItemError(EMPTY_FILE, 'missing')\nquarantine_row(i, s, r, 'raw', MISSING, 'unreadable')\nseverity(c, 'empty_mask')\n") == []
    assert reason_positions("raise ItemError('brand_new_reason', 'x')\n") == [(1, "brand_new_reason")]


def test_no_module_writes_a_quarantine_reason_as_a_string_literal():
    found = [f"{p.relative_to(REPO)}:{line}: {value!r}" for p in core_modules() for line, value in literal_reasons(p.read_text())]
    assert not found, "use the constant from medtrinity_core.reasons instead of the literal: " + "; ".join(found)


# -- (b) every reason the code can produce is in the table ---------------------------------------------

def test_every_literal_in_a_reason_position_is_a_reason_of_the_table():
    """A reason spelt as a new literal (not in the table) is no constant either: caught here."""
    found = [f"{p.relative_to(REPO)}:{line}: {value!r}" for p in core_modules() for line, value in reason_positions(p.read_text())
             if value not in REASONS and value not in NOT_QUARANTINE]
    assert not found, "not a reason of medtrinity_core/reasons.py: " + "; ".join(found)


def test_every_constant_the_code_imports_from_reasons_is_a_reason_of_the_table():
    imported: dict[str, list[str]] = {}
    for p in core_modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "medtrinity_core.reasons":
                for alias in node.names:
                    imported.setdefault(alias.name, []).append(str(p.relative_to(REPO)))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("reasons", "R") and node.attr.isupper():
                imported.setdefault(node.attr, []).append(str(p.relative_to(REPO)))
    assert len(imported) > 30  # the stages use them
    constants = {name for name in imported if name.isupper() and name not in ("REASONS", "STAGES")}
    for name in constants:
        assert getattr(reasons_module, name, None) in REASONS, f"{name} (imported by {imported[name]}) is not a reason of the table"


def test_the_table_is_one_reason_per_constant_with_a_known_stage_and_one_plain_sentence():
    constants = {k: v for k, v in vars(reasons_module).items() if k.isupper() and not k.startswith("_") and isinstance(v, str)}
    assert set(constants.values()) == set(REASONS)
    assert all(k == v.upper() for k, v in constants.items())
    for name, r in REASONS.items():
        assert r.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert r.stages and set(r.stages) <= set(STAGES) and len(set(r.stages)) == len(r.stages)
        assert isinstance(r.retryable, bool)
        assert r.meaning[0].isupper() and r.meaning.endswith(".") and "\n" not in r.meaning and "|" not in r.meaning
    assert REASONS["unreadable"].retryable and not REASONS["empty_file"].retryable and not REASONS["decode_error"].retryable
    assert WITHDRAWN == ("taken_down",) and NOT_DATA == ("hidden_file",)


def test_an_unknown_reason_is_refused_naming_it():
    assert reason("empty_file") == "empty_file"
    with pytest.raises(ValueError, match="unknown quarantine reason 'no_such_reason'"):
        reason("no_such_reason")
    with pytest.raises(ValueError, match="unknown quarantine reason 'no_such_reason'"):
        quarantine_row("item-1", "s", "a.png", "raw", "no_such_reason", "detail")
    row = quarantine_row("item-1", "s", "a.png", "raw", "empty_file", "0 bytes")
    assert row == {"item_id": "item-1", "source": "s", "relpath": "a.png", "stage": "raw", "reason": "empty_file", "detail": "0 bytes"}


def test_an_item_error_with_a_reason_outside_the_table_is_caught_when_its_row_is_written(tmp_path, monkeypatch):
    """A reader that raised an ItemError with a reason nobody added to the table fails the stage by name,
    never writes an unknown reason to the quarantine table."""
    import medtrinity_core.imaging.normalize as normalize_module
    from medtrinity_core.storage import Workdir

    root = tmp_path / "src"
    _png(root / "images" / "a.png")
    src = _labeled_source(root)

    def bad_reader(*_args, **_kw):
        raise ItemError("made_up_reason", "a reason nobody added to the table")

    monkeypatch.setitem(normalize_module.READERS, "image2d", bad_reader)
    from medtrinity_core.sources.discover import discover
    from medtrinity_core.sources.inventory import inventory

    items, _ = discover(src)
    raw, _ = inventory(src, items)
    with pytest.raises(ValueError, match="unknown quarantine reason 'made_up_reason'"):
        normalize_module.normalize(src, raw.iter_rows(named=True), Workdir.at(tmp_path / "wd"))


# -- (c) the README's table is the table ---------------------------------------------------------------

def readme_reasons() -> list[tuple[str, str, str, str]]:
    """(reason, stage, meaning, retryable) of each row of the README's `| reason | stage | meaning | retryable |` table."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index("| reason | stage | meaning | retryable |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, line
        rows.append((cells[0].strip("`"), cells[1], cells[2], cells[3]))
    return rows


def test_the_readme_lists_the_reasons_of_the_table_with_their_stage_meaning_and_retryable():
    rows = readme_reasons()
    assert [r[0] for r in rows] == list(REASONS), "README.md's table of quarantine reasons differs from medtrinity_core/reasons.py"
    for name, stage, meaning, retryable in rows:
        r = REASONS[name]
        assert (stage, meaning, retryable) == (", ".join(r.stages), r.meaning, "yes" if r.retryable else "no"), name


# -- (d) real bad files come out with a reason of the table, at its stated stage ------------------------

def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(path)


def _labeled_source(root: Path) -> SourceConfig:
    return SourceConfig(name="r", modality="dermoscopy", license="LicenseRef-test", root=root, layout="labeled_images",
                        images=r"images/[^/]+\.png", label="lesion")


def _run_raw_and_normalized(src: SourceConfig, tmp_path: Path) -> pl.DataFrame:
    """Every planned shard through the raw stage (from its shard plan) and the normalized stage: their
    quarantine rows. Each stage function returns (rows, quarantine rows, ...)."""
    from medtrinity_core.imaging.normalize import normalized_stage
    from medtrinity_core.sources.inventory import raw_stage
    from medtrinity_core.sources.shards import planned_shard, update_plan
    from medtrinity_core.storage import Workdir

    wd = Workdir.at(tmp_path / "wd")
    frames = []
    for shard in update_plan(wd, src):
        raw, q = raw_stage(src, planned_shard(wd, src.name, shard), wd)[:2]
        frames += [q, normalized_stage(src, raw, wd, shard)[1]]
    return pl.concat(frames)


def _assert_in_table_at_stage(rows: pl.DataFrame) -> None:
    for row in rows.iter_rows(named=True):
        assert row["reason"] in REASONS, row
        assert row["stage"] in REASONS[row["reason"]].stages, f"{row['reason']} recorded at {row['stage']}, the table says {REASONS[row['reason']].stage}"


def test_an_empty_file_a_dangling_symlink_and_a_file_no_decoder_reads_get_reasons_of_the_table_at_their_stage(tmp_path):
    root = tmp_path / "src"
    _png(root / "images" / "good.png")
    (root / "images" / "empty.png").write_bytes(b"")
    (root / "images" / "dangling.png").symlink_to(root / "images" / "gone.png")  # inside the root, its target deleted
    (root / "images" / "text.png").write_text("this is no PNG\n")
    (root / "images" / ".hidden.png").write_bytes((root / "images" / "good.png").read_bytes())
    q = _run_raw_and_normalized(_labeled_source(root), tmp_path)
    got = {(r["relpath"], r["stage"], r["reason"]) for r in q.iter_rows(named=True)}
    assert got == {("images/empty.png", "raw", "empty_file"), ("images/dangling.png", "raw", "unreadable"),
                   ("images/text.png", "normalized", "not_an_image"), ("images/.hidden.png", "raw", "hidden_file")}
    _assert_in_table_at_stage(q)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a file of mode 000")
def test_a_file_without_read_permission_is_unreadable_at_raw(tmp_path):
    root = tmp_path / "src"
    _png(root / "images" / "good.png")
    _png(root / "images" / "locked.png", 7)
    (root / "images" / "locked.png").chmod(0)
    try:
        q = _run_raw_and_normalized(_labeled_source(root), tmp_path)
    finally:
        (root / "images" / "locked.png").chmod(0o644)
    assert [(r["relpath"], r["stage"], r["reason"]) for r in q.iter_rows(named=True)] == [("images/locked.png", "raw", "unreadable")]
    assert REASONS["unreadable"].retryable
    _assert_in_table_at_stage(q)
