"""Safe file output: nothing is overwritten unless asked, nothing partial is left behind.

``atomic_output`` yields a temporary path in the target's directory (same suffix, so
format detection by extension still works); the caller writes it, and only when the
block ends without error is it renamed over the target.  Interrupts, disk-full errors
or crashes remove the temporary file and leave any previous target untouched.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import InputError, OutputError


def check_output(path: Path, force: bool) -> Path:
    """Refuse to clobber an existing file unless ``force``; check the folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path} already exists (use --force to overwrite)")
    if path.is_dir():
        raise OutputError(f"{path} is a directory")
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_output(path: Path, force: bool = False):
    """Context manager yielding a temporary path that replaces ``path`` on success."""
    path = check_output(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror}") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~process_umask())   # mkstemp makes 0600; a finished output gets the usual mode
    try:
        yield Path(tmp)
        if not force and path.exists():
            raise OutputError(f"{path} appeared while writing (use --force to overwrite)")
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def process_umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes, force: bool = False) -> None:
    """Atomically write bytes (fsync before the rename)."""
    with atomic_output(path, force) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def read_bytes(path: Path, limit: int = 1 << 34) -> bytes:
    """Read a whole input file with a clear error when it is missing or unreadable."""
    path = Path(path)
    try:
        if path.stat().st_size > limit:
            raise InputError(f"{path} is larger than {limit} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
