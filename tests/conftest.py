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
