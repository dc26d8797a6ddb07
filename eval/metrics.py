"""Image quality and rate metrics: PSNR (scikit-image), MS-SSIM (pytorch-msssim), bits per pixel."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from skimage.metrics import peak_signal_noise_ratio
from torch.nn.functional import avg_pool2d

_WIN = 11  # pytorch-msssim's default Gaussian window (sigma 1.5)
_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]  # Wang et al. 2003, finest scale first


def psnr(ref: np.ndarray, test: np.ndarray, data_range: float = 255) -> float:
    """PSNR in dB over all pixels and channels of two same-shape images.

    Identical images have zero error: the result is ``float('inf')``."""
    if ref.shape != test.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {test.shape}")
    if np.array_equal(ref, test):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, test, data_range=data_range))


def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales (at most 5) whose 11-px window still fits an image of this size."""
    side, scales = min(height, width), 0
    while scales < len(_WEIGHTS) and side > (_WIN - 1) * 2**scales:
        scales += 1
    return scales


def ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM of two uint8 HxWx3 images (float32, data range 255, mean over the RGB channels).

    Images with both sides over 160 px get the standard 5-scale MS-SSIM (pytorch_msssim.ms_ssim,
    as CompressAI reports it). Smaller images get as many scales as fit (4 above 80 px, 3 above
    40 px, ...), with the first weights renormalised to sum to 1: such values are not comparable with
    5-scale ones. Images of 10 px or less on a side return nan, since not even one window fits."""
    if ref.shape != test.shape or ref.ndim != 3:
        raise ValueError(f"need two HxWxC images of the same shape, got {ref.shape} and {test.shape}")
    scales = ms_ssim_scales(*ref.shape[:2])
    if scales == 0:
        return float("nan")
    x, y = (torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None] for a in (ref, test))
    if scales == len(_WEIGHTS):
        return float(_ms_ssim(x, y, data_range=255))
    # pytorch_msssim.ms_ssim insists on 5 scales; this is its loop cut to the scales that fit.
    weights = torch.tensor(_WEIGHTS[:scales])
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(_WIN, 1.5).repeat([x.shape[1], 1, 1, 1])
    factors = []
    for level in range(scales):
        ssim, cs = _ssim(x, y, win=win, data_range=255, size_average=False)
        if level < scales - 1:
            factors.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x, y = avg_pool2d(x, 2, padding=pad), avg_pool2d(y, 2, padding=pad)
    factors.append(torch.relu(ssim))
    return float(torch.prod(torch.stack(factors) ** weights.view(-1, 1, 1), dim=0).mean())


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_bytes`` of stream for an image of ``height`` x ``width`` pixels."""
    return 8.0 * num_bytes / (height * width)
