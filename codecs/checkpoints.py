"""Training checkpoints that survive the end of a session: a run's state in one file, read back
with a clear error when it is unreadable, written atomically (:func:`ncodec.fileio.atomic_output`),
and SIGTERM turned into the same KeyboardInterrupt as Ctrl-C so a loop can save before it exits."""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import UsageError
from .fileio import atomic_output, check_output


class CheckpointFile:
    """A training state (a dict of tensors and numbers) kept in ``path``, whose folder must exist
    (checked up front, not after hours of training); :meth:`due` says when ``every`` seconds have
    passed since it was last saved."""

    def __init__(self, path: Path, every: float):
        self.path, self.every = check_output(path, force=True), every
        self._saved = time.monotonic()

    def load(self, device: torch.device | str) -> dict | None:
        """The saved state (tensors on ``device``), or None when nothing was saved yet."""
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location=device, weights_only=True)
        except Exception as exc:
            raise UsageError(f"checkpoint {self.path} is unreadable ({exc}); delete it to start afresh") from None

    def due(self) -> bool:
        return time.monotonic() - self._saved >= self.every

    def save(self, state: dict) -> None:
        with atomic_output(self.path, force=True) as tmp:
            torch.save(state, tmp)
        self._saved = time.monotonic()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM (a session or job scheduler ending the process) raises
    KeyboardInterrupt, as Ctrl-C does; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
