"""Every file a source's stages open is resolved when it is read and must lie under the source root:
the file itself (a symlink swapped in after discovery included) and the data files that a detached
header names (MetaImage `ElementDataFile`, NRRD `data file`). Anything else is `outside_root`.

Names come from the file system as Python decodes them: bytes that are not UTF-8 become lone surrogates,
which no Parquet file, hash or log line can hold. `undecodable` tells such names; `escaped` is text that
may be written instead, its bad bytes shown as `\\xNN`; `public_name` is what a relpath of such a name is
written as: escaped, and marked so that it never equals the relpath of a real file (see there).

A symlink loop (`loop.jpg -> loop.jpg`) has no resolved path: it is `symlink_loop`, never followed."""

from __future__ import annotations

import errno
import re
from pathlib import Path, PurePath

from medtrinity_core.errors import ItemError
from medtrinity_core.reasons import OUTSIDE_ROOT, SYMLINK_LOOP

HEADER_BYTES = 1 << 16
_MHD_KEY = re.compile(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", re.IGNORECASE)
_NRRD_KEY = re.compile(r"^\s*data\s*file\s*:\s*(.+?)\s*$", re.IGNORECASE)


def undecodable(name: str) -> bool:
    """Whether a name (a path) holds bytes that are not UTF-8 (lone surrogates, as `os` decodes them)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def escaped(text: str) -> str:
    """The text with each byte that is not UTF-8 written `\\xNN` (b'caf\\xe9.png' -> 'caf\\\\xe9.png'); other
    text, UTF-8 names with accents included, unchanged. Safe to write to Parquet, hash or log."""
    if not undecodable(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file system name decodes to (not \udc80-\udcff): shown as \udNNN
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


NOT_UTF8 = " [not UTF-8]"


def public_name(relpath: str) -> str:
    """The relpath as written for a name that is not UTF-8 (`images/caf\\xe9.png [not UTF-8]`): each bad
    byte `\\xNN`, a literal backslash doubled, and the marker ` [not UTF-8]` at the end. A real file may be
    named `caf\\xe9.png` (a backslash, x, e, 9): without the marker, the two would be one row of a plan and
    one file would be lost. Doubling backslashes makes the form distinct for any two such names, and the
    marker, always there, keeps it off every decodable name (bar one that ends with the marker itself:
    `public_names` numbers that case) even when the real file arrives after the other was planned.
    A UTF-8 name is returned unchanged."""
    if not undecodable(relpath):
        return relpath
    return escaped(relpath.replace("\\", "\\\\")) + NOT_UTF8


def public_names(relpaths) -> dict[str, str]:
    """`public_name` of each name of one listing that is not UTF-8, unique among all the listing's names:
    one that equals a listed decodable name (or an earlier one) is numbered (` [not UTF-8 #2]`)."""
    relpaths = list(relpaths)
    taken = {rel for rel in relpaths if not undecodable(rel)}
    out = {}
    for rel in sorted((r for r in relpaths if undecodable(r)), key=lambda r: r.encode("utf-8", "surrogatepass")):
        name, n = public_name(rel), 1
        while name in taken:
            n += 1
            name = f"{public_name(rel)[: -len(NOT_UTF8)]} [not UTF-8 #{n}]"
        taken.add(name)
        out[rel] = name
    return out


def resolved(path: Path) -> Path | None:
    """The path with every symlink followed, or None for a symlink loop (Python 3.11's `resolve` raises
    RuntimeError on one; later versions an OSError with errno ELOOP)."""
    try:
        return path.resolve()
    except RuntimeError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise


def _within(root: Path, path: Path, relpath: str, what: str) -> Path:
    resolved_path = resolved(path)
    if resolved_path is None:
        raise ItemError(SYMLINK_LOOP, f"{relpath}: {what} is a symlink loop (following it leads back to a symlink on its way, never to a file); it is not read")
    if not resolved_path.is_relative_to(root):
        raise ItemError(OUTSIDE_ROOT, f"{relpath}: {what} resolves outside the source root; only files under the root are read")
    return resolved_path


def _data_files(path: Path) -> list[str]:
    """File names a detached header points at (patterns by their folder), relative to the header."""
    lower = path.name.lower()
    if not lower.endswith((".mhd", ".mha", ".nhdr")):
        return []
    try:
        with open(path, "rb") as fh:
            lines = fh.read(HEADER_BYTES).decode("latin-1").splitlines()
    except OSError:
        return []  # the reader reports a file it cannot open
    key = _NRRD_KEY if lower.endswith(".nhdr") else _MHD_KEY
    for n, line in enumerate(lines):
        m = key.match(line)
        if not m:
            continue
        value = m.group(1)
        if value.upper() in ("LOCAL",):
            return []
        if value.upper().startswith("LIST"):
            return [item.strip() for item in lines[n + 1 :] if item.strip()]
        name = value.split()[0] if "%" in value else value
        return [str(PurePath(name).parent / "x") if "%" in name else name]
    return []


def inside(root: Path, relpath: str) -> Path:
    """The path of `relpath` under `root`, checked now (not only at discovery), with the data files its
    header names; raises `ItemError("outside_root")` otherwise (`symlink_loop` for a loop)."""
    root = root.resolve()
    path = _within(root, root / relpath, relpath, "the file")
    for name in _data_files(path):
        _within(root, path.parent / name, relpath, f"the data file {name!r} its header names")
    return path
