"""Bjøntegaard deltas (VCEG-M33) with piecewise cubic interpolation.

Like the common ``bd_rate(R1, PSNR1, R2, PSNR2, piecewise=1)`` implementations: each curve is
interpolated with a PCHIP over log-rate (natural log), and the gap between the two interpolants is
averaged over the interval where both curves are defined. PCHIP integrals are taken exactly rather
than by sampling, which differs from the trapezoid versions only in the last decimals."""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(x, y, what: str, keep_higher: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sorted curve points; of points sharing an x value only the best is kept (the lowest rate at
    one quality, or the highest quality at one rate), as a dense sweep of a classical codec can
    repeat a value."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"{what}: {x.size} rates but {y.size} quality values")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{what}: rates and quality values must be finite (lossless points give inf PSNR)")
    order = np.lexsort((y if keep_higher else -y, x))      # by x, the best y of each x last
    x, y = x[order], y[order]
    last = np.r_[np.diff(x) > 0, True]
    x, y = x[last], y[last]
    if x.size < 2:
        raise ValueError(f"{what}: a rate-distortion curve needs at least 2 distinct points, got {x.size}")
    return x, y


def _mean_gap(x1, y1, x2, y2, what: str, keep_higher: bool) -> float:
    """Mean of (curve 2 - curve 1) over the common x interval of two PCHIP-interpolated curves."""
    x1, y1 = _curve(x1, y1, f"{what}, anchor curve", keep_higher)
    x2, y2 = _curve(x2, y2, f"{what}, test curve", keep_higher)
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if hi <= lo:
        raise ValueError(f"{what}: the curves do not overlap (anchor spans {x1[0]:.4g}..{x1[-1]:.4g}, "
                         f"test {x2[0]:.4g}..{x2[-1]:.4g}), so no Bjøntegaard delta exists")
    area1 = PchipInterpolator(x1, y1).integrate(lo, hi)
    area2 = PchipInterpolator(x2, y2).integrate(lo, hi)
    return float((area2 - area1) / (hi - lo))


def _log_rate(rate, what: str) -> np.ndarray:
    rate = np.asarray(rate, dtype=np.float64)
    if np.any(rate <= 0):
        raise ValueError(f"{what}: rates must be positive")
    return np.log(rate)


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Bjøntegaard delta rate in percent: the test curve's mean rate change at equal quality.

    Negative means the test codec needs fewer bits than the anchor. Rates may be bpp or kbps (any
    positive unit, the same for both curves). Raises ValueError for curves of fewer than 2 points,
    non-finite values, or quality ranges that do not overlap."""
    gap = _mean_gap(psnr_anchor, _log_rate(rate_anchor, "BD-rate anchor"), psnr_test,
                    _log_rate(rate_test, "BD-rate test"), "BD-rate", keep_higher=False)
    return float(np.expm1(gap) * 100.0)


def bd_psnr(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Bjøntegaard delta PSNR in dB: the test curve's mean quality change at equal rate.

    Positive means the test codec is better. Raises ValueError like :func:`bd_rate`."""
    return _mean_gap(_log_rate(rate_anchor, "BD-PSNR anchor"), psnr_anchor, _log_rate(rate_test, "BD-PSNR test"),
                     psnr_test, "BD-PSNR", keep_higher=True)


def quality_at_rate(rate_anchor, quality_anchor, rate: float, higher_is_better: bool = True) -> float | None:
    """The anchor curve's quality at ``rate``: the same piecewise cubic over log-rate the deltas use,
    evaluated at one point (e.g. another codec's real bitrate, for a comparison at equal rate).

    None outside the anchor's rate range (no extrapolation). Raises ValueError like :func:`bd_rate`."""
    x, y = _curve(_log_rate(rate_anchor, "anchor"), quality_anchor, "anchor curve", higher_is_better)
    at = float(_log_rate(rate, "rate"))
    return float(PchipInterpolator(x, y)(at)) if x[0] <= at <= x[-1] else None


def default_anchor(curves: list[str], classical, preferred: str) -> str:
    """The BD-rate anchor among ``curves`` (the sweep's, then any reference curves, by result name):
    ``preferred`` if there, else the first classical codec, else the first curve."""
    ranked = [c for c in curves if c in classical]
    if preferred in ranked:
        return preferred
    return ranked[0] if ranked else curves[0]
