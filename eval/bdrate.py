"""Bjøntegaard deltas (VCEG-M33) with piecewise cubic (PCHIP) interpolation."""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(x, y):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("a rate-distortion curve needs at least two (rate, quality) points")
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError("curve has repeated values on its interpolation axis")
    return x, y


def _mean_gap(x1, y1, x2, y2) -> float:
    """Average of (y2 - y1) over the overlapping x interval of two PCHIP-interpolated curves."""
    x1, y1 = _curve(x1, y1)
    x2, y2 = _curve(x2, y2)
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if hi <= lo:
        raise ValueError("the two curves do not overlap in quality/rate; no Bjøntegaard delta exists")
    i1 = PchipInterpolator(x1, y1).integrate(lo, hi)
    i2 = PchipInterpolator(x2, y2).integrate(lo, hi)
    return float((i2 - i1) / (hi - lo))


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Average bitrate difference (%) of the test curve against the anchor at equal quality."""
    gap = _mean_gap(psnr_anchor, np.log(rate_anchor), psnr_test, np.log(rate_test))
    return float((np.exp(gap) - 1.0) * 100.0)


def bd_psnr(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Average quality difference (dB) of the test curve against the anchor at equal rate."""
    return _mean_gap(np.log(rate_anchor), psnr_anchor, np.log(rate_test), psnr_test)
