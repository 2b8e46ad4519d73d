"""Every file a source's stages open is resolved when it is read and must lie under the source root:
the file itself (a symlink swapped in after discovery included) and the data files that a detached
header names (MetaImage `ElementDataFile`, NRRD `data file`). Anything else is `outside_root`.

Names come from the file system as Python decodes them: bytes that are not UTF-8 become lone surrogates,
which no Parquet file, hash or log line can hold. `undecodable` tells such names; `escaped` is the name
that may be written instead, its bad bytes shown as `\\xNN`."""

from __future__ import annotations

import re
from pathlib import Path, PurePath

from medtrinity_core.errors import ItemError

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


def _within(root: Path, path: Path, relpath: str, what: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ItemError("outside_root", f"{relpath}: {what} resolves outside the source root; only files under the root are read")
    return resolved


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
    header names; raises `ItemError("outside_root")` otherwise."""
    root = root.resolve()
    path = _within(root, root / relpath, relpath, "the file")
    for name in _data_files(path):
        _within(root, path.parent / name, relpath, f"the data file {name!r} its header names")
    return path
