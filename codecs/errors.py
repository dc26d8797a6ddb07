"""The one exception family ncodec raises for problems a user can fix or should know of.

Each class carries the exit code the CLI returns for it, so scripts can tell a corrupt
stream from a missing model without parsing messages.  :func:`check_input` turns a missing
input path into the error a person expects.
"""
from __future__ import annotations

from pathlib import Path


class NcodecError(Exception):
    """Base class: a one-line, human-readable problem."""

    exit_code = 1


class UsageError(NcodecError):
    """Wrong arguments or options."""

    exit_code = 2


class InputError(NcodecError):
    """An input file or array ncodec cannot use (unreadable, unsupported, absurd size)."""

    exit_code = 3


class CorruptStreamError(NcodecError):
    """A compressed file that is truncated, damaged or not an ncodec stream."""

    exit_code = 4


class ModelMismatchError(NcodecError):
    """A stream made with a model, weights or coder version this installation does not have."""

    exit_code = 5


class OutputError(NcodecError):
    """An output that cannot be written (exists without --force, unwritable, disk full)."""

    exit_code = 6


EXIT_CODES = {cls.__name__: cls.exit_code for cls in (NcodecError, UsageError, InputError, CorruptStreamError,
                                                      ModelMismatchError, OutputError)}


def check_input(path: str | Path, folder: bool = False) -> Path:
    """``path`` as a Path if it exists as a file (with ``folder``, as a folder), else an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir() != folder:
        raise InputError(f"{path} is {'not a folder' if folder else 'a folder, not a file'}")
    return path
