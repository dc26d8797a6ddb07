"""Long jobs on a Dask cluster (``--cluster ADDRESS``): folders of files to encode and image sweeps.

Dask's ``distributed`` runs the jobs (``pip install 'ncodec[cluster]'``); ncodec only hands it
functions through the standard :class:`concurrent.futures.Executor` interface that its local
process pools use too.  Each job sets torch's thread count to the submitting process's, so a job
gives the same bytes on a worker as it would here (on machines of the same CPU kind).  Workers
need ncodec installed and, for folders, the same file paths as this machine (a shared filesystem).
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial

from .errors import UsageError

CONNECT_SECONDS = 10


@contextmanager
def cluster_executor(address: str):
    """An Executor whose jobs run on the Dask cluster whose scheduler listens at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--cluster needs Dask's distributed package: pip install 'ncodec[cluster]'") from None
    try:
        client = Client(address, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach a Dask scheduler at {address}: {exc}") from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


def with_threads(fn, threads: int):
    """``fn`` run with torch's thread count set to ``threads`` (picklable for the workers)."""
    return partial(_run_with_threads, fn, threads)


def _run_with_threads(fn, threads: int, *args, **kwargs):
    import torch

    torch.set_num_threads(threads)
    return fn(*args, **kwargs)
