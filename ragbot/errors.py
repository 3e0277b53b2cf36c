"""Domain errors. Library code raises these; only the CLI and UI turn them into messages."""

from __future__ import annotations


class RagbotError(Exception):
    """Base class: the message is meant for the user and says what to do."""


class ConfigError(RagbotError):
    """A setting is invalid."""


class ModelError(RagbotError):
    """A model cannot be found, verified or loaded."""


class IndexMismatchError(RagbotError):
    """The stored index was built with a different embedder than the settings name."""


class DocumentError(RagbotError):
    """One input file cannot be ingested. `path` names the file, `reason` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DiskFullError(RagbotError):
    """The disk holding the data dir is full; what was stored before is kept."""


class BusyError(RagbotError):
    """Another ragbot process is writing to the same data dir (or, for a restore, serving it)."""
