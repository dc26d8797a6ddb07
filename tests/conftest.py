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
    """Run ``ncodec ARGS`` (a training command writing into ``out``), send it SIGTERM once its first
    steps ran, and return the step its checkpoint holds (asserting it exited as interrupted)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "ncodec.cli", *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "log.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)   # the trainers open their log just before the first step
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
    return torch.load(out / "checkpoint.pt", weights_only=True)["step"]
