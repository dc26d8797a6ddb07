import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*TF32.*")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tests that pin torch's thread count (benchmarks) must not leak it into later tests: float
    results, and with them encoder-side searches such as refinement, depend on it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads_after_module():
    """The same for a test module's module-scoped fixtures, which are set up before the per-test
    restore records the count and torn down after the module's last test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def natural_image(h: int = 96, w: int = 128) -> np.ndarray:
    """A crop of a photograph bundled with scikit-image (no research data needed)."""
    from skimage import data

    img = data.astronaut()
    return np.ascontiguousarray(img[100:100 + h, 150:150 + w])


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    return natural_image()


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    d = DATA / "kodak"
    if not d.is_dir():
        pytest.skip(f"Kodak images not found at {d} (../shared/data is absent)")
    return d


def terminate_training(args: list[str], out: Path) -> int:
    """Run ``ncodec ARGS`` (a training command writing into ``out``), send it SIGTERM as soon as its
    log.jsonl records a finished step (the trainers log the first step of every invocation), and
    return the step its checkpoint holds, asserting it exited as interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    log = out / "log.jsonl"
    safety = time.monotonic() + 900   # only against hanging forever; never what a test measures
    with tempfile.TemporaryFile("w+") as err:   # a file, not a pipe: the progress bar cannot fill it and block
        proc = subprocess.Popen([sys.executable, "-m", "ncodec.cli", *args], stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True)
        stepped = False
        while proc.poll() is None and time.monotonic() < safety:
            if log.exists() and log.read_text().endswith("\n"):
                stepped = True
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.05)
        try:
            proc.wait(timeout=max(1.0, safety - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.seek(0)
        message = err.read()[-2000:]
    assert stepped, f"training logged no step:\n{message}"
    assert proc.returncode == 130 and "interrupted" in message, message
    return torch.load(out / "checkpoint.pt", weights_only=True)["step"]
