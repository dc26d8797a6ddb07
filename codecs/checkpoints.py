"""Training checkpoints that survive the end of a session: atomic writes, and SIGTERM turned into
the same KeyboardInterrupt as Ctrl-C so the trainers checkpoint before they exit."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import torch


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
