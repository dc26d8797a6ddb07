"""Safe file output: nothing is overwritten unless asked, nothing partial is left behind.

``atomic_output`` is the one way ncodec writes files: it yields a temporary path in the
target's directory (a file with the same suffix, so format detection by extension still
works, or an empty folder); the caller writes it, and only when the block ends without
error is it renamed over the target.  Interrupts, disk-full errors or crashes remove the
temporary and leave any previous target untouched.  ``write_bytes`` and ``write_text`` wrap
it for whole contents.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError, OutputError


def check_output(path: Path, force: bool, folder: bool = False) -> Path:
    """Refuse to clobber an existing output unless ``force``; check the parent folder exists and
    that an existing output is of the kind to be written (a file, or with ``folder`` a folder)."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path} already exists (use --force to overwrite)")
    if path.exists() and path.is_dir() != folder:
        raise OutputError(f"{path} is a directory" if not folder else f"{path} exists and is not a folder")
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_output(path: Path, force: bool = False, folder: bool = False):
    """Context manager yielding a temporary path (with ``folder``, an empty folder) that replaces
    ``path`` when the block ends without error; the output gets the usual mode for new files."""
    path = check_output(path, force, folder)
    try:
        if folder:
            tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror}") from None
    try:
        yield Path(tmp)
        if not force and path.exists():
            raise OutputError(f"{path} appeared while writing (use --force to overwrite)")
        # mkstemp and mkdtemp (and some writers, e.g. safetensors) create private modes
        os.chmod(tmp, (0o777 if folder else 0o666) & ~process_umask())
        if folder and path.exists():
            _replace_folder(Path(tmp), path)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if folder:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _replace_folder(new: Path, path: Path) -> None:
    """Put folder ``new`` in place of the existing folder ``path`` (two renames), then delete the old one."""
    old = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
    try:
        os.replace(path, old)      # a folder may be renamed onto an empty one
    except OSError:
        os.rmdir(old)
        raise
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


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


def write_text(path: Path, text: str, force: bool = False) -> None:
    """Atomically write UTF-8 text (fsync before the rename)."""
    write_bytes(path, text.encode("utf-8"), force)


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
