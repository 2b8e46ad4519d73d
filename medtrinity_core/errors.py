"""Errors a user can act on: each renders as one clear line."""

from __future__ import annotations


def _one_line(text: str) -> str:
    """Line breaks and other control characters shown escaped: an error is one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text.strip())


class MedtrinityError(Exception):
    """Base class: the message is complete and shown to the user as is."""


class SourcesFileError(MedtrinityError):
    """A sources file that cannot be used; names the file, line and key."""

    def __init__(self, file: str, line: int | None, key: str, message: str):
        key, message = _one_line(str(key)), _one_line(str(message))  # a key or value quoted in the message may hold a line break
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}")


class UsageError(MedtrinityError):
    """A command given a file or value it cannot use (exit code 2, as a bad sources file)."""


class ItemError(MedtrinityError):
    """One input item cannot be processed; it goes to quarantine with this reason."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")
