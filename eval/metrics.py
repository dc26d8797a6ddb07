"""Image quality and rate metrics (PSNR and MS-SSIM come from scikit-image / pytorch-msssim)."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from skimage.metrics import peak_signal_noise_ratio

_MS_SSIM_WINDOW = 11


def psnr(ref: np.ndarray, test: np.ndarray, data_range: float = 255) -> float:
    """PSNR in dB over all pixels and channels; ``inf`` for identical images."""
    if np.array_equal(ref, test):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, test, data_range=data_range))


def ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (5 scales) of two uint8 HxWxC images.

    Images under 161 px on a side use a smaller Gaussian window so that all 5 scales fit;
    images of 32 px or less return nan (MS-SSIM is undefined there)."""
    side = min(ref.shape[:2])
    win = _MS_SSIM_WINDOW
    while win > 3 and (win - 1) * 16 >= side:
        win -= 2
    if (win - 1) * 16 >= side:
        return float("nan")
    a, b = (torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].double() for x in (ref, test))
    return float(_ms_ssim(a, b, data_range=255, win_size=win))


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` for an image of height x width."""
    return 8.0 * num_bytes / (height * width)
