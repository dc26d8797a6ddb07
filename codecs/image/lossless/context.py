"""What the lossless model sees: colour planes, their decoding order and every value's context.

RGB is turned into the reversible YCoCg-R planes (integers, exactly invertible); grey is one plane.
Plane ``c`` of an h x w image is decoded in wavefronts: value (y, x) at step ``x + 2 * y + LAG * c``,
after its causal neighbours in its own plane (``dx + 2 * dy < 0``) and after a 3x3 neighbourhood
around (y, x) in every earlier plane (``dx + 2 * dy <= 3 < LAG``).  A whole image takes about
``w + 2 * h + LAG * planes`` steps.

:func:`features` turns the gathered integer neighbours into the model's integer inputs; the encoder
(all values at once) and the decoder (one wavefront at a time) call the same function, so both see
the same integers.
"""
from __future__ import annotations

import numpy as np

from ..overfit.model import CAUSAL

LAG = 4
CROSS = ((0, 0), (0, -1), (-1, 0), (-1, -1), (0, 1), (1, 0), (1, 1))   # in every earlier plane
MED = ((0, -1), (-1, 0), (-1, -1))       # the neighbours of the median edge detector (LOCO-I)
FEATURE_SCALE = 32                       # features enter the networks divided by this
EMPTY_PREDICTION = 128                   # the prediction of a value with no decoded neighbour


def to_planes(arr: np.ndarray) -> list[np.ndarray]:
    """HxWx1 or HxWx3 uint8 -> int64 planes: grey, or YCoCg-R (Y 0..255, Co and Cg -255..255)."""
    if arr.shape[2] == 1:
        return [arr[:, :, 0].astype(np.int64)]
    r, g, b = (arr[:, :, i].astype(np.int64) for i in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    return [t + (cg >> 1), co, cg]


def from_planes(planes: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`to_planes` (values outside the planes' ranges are clipped to uint8)."""
    if len(planes) == 1:
        return np.clip(planes[0], 0, 255).astype(np.uint8)[:, :, None]
    y, co, cg = planes
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)


def feature_count(plane: int) -> int:
    """Inputs of plane ``plane``'s network: its own causal neighbours and prediction, then eight per
    earlier plane."""
    return len(CAUSAL) + 1 + (len(CROSS) + 1) * plane


def _offsets(plane: int) -> list[tuple[int, int, int]]:
    """(plane, dy, dx) of every value gathered for a value of ``plane``, in :func:`features`' order."""
    return [(plane, dy, dx) for dy, dx in CAUSAL] + [(q, dy, dx) for q in range(plane) for dy, dx in CROSS]


class PlaneOrder:
    """The wavefront decoding order of ``planes`` planes of h x w values stored one after the other
    in a flat buffer (with one more, zero, entry that stands for every neighbour outside the image)."""

    def __init__(self, planes: int, h: int, w: int):
        self.planes, self.h, self.w = planes, h, w
        self.size = planes * h * w
        c, y, x = (np.arange(n, dtype=np.int32) for n in (planes, h, w))
        step = (x[None, None, :] + 2 * y[None, :, None] + LAG * c[:, None, None]).ravel()
        self.order = np.argsort(step, kind="stable")        # by step, then plane, then raster
        self.bounds = np.flatnonzero(np.diff(step[self.order])) + 1

    def gather(self, positions: np.ndarray, plane: int) -> tuple[np.ndarray, np.ndarray]:
        """Buffer indices (n, k) of the neighbours of flat ``positions`` (all in ``plane``), the
        outside entry where a neighbour lies beyond the image, and which are inside."""
        y, x = np.divmod(positions - plane * self.h * self.w, self.w)
        offsets = _offsets(plane)
        index = np.empty((len(positions), len(offsets)), dtype=np.int64)
        for col, (q, dy, dx) in enumerate(offsets):
            yy, xx = y + dy, x + dx
            inside = (yy >= 0) & (yy < self.h) & (xx >= 0) & (xx < self.w)
            index[:, col] = np.where(inside, (q * self.h + yy) * self.w + xx, self.size)
        return index, index < self.size

    def steps(self) -> list[tuple[int, int]]:
        """(start, end) in :attr:`order` of every step."""
        edges = [0, *self.bounds.tolist(), self.size]
        return list(zip(edges[:-1], edges[1:]))


def _med(left, up, corner, has_left, has_up, has_corner) -> np.ndarray:
    """LOCO-I's median edge detector; a missing neighbour is replaced by one that exists."""
    left = np.where(has_left, left, up)
    up = np.where(has_up, up, left)
    corner = np.where(has_corner, corner, left)
    lo, hi = np.minimum(left, up), np.maximum(left, up)
    pred = np.where(corner >= hi, lo, np.where(corner <= lo, hi, left + up - corner))
    return np.where(has_left | has_up, pred, EMPTY_PREDICTION)


def features(values: np.ndarray, inside: np.ndarray, plane: int) -> tuple[np.ndarray, np.ndarray]:
    """Gathered neighbour values and their insideness (n, k) -> the integer features (n,
    :func:`feature_count`) and the prediction each value's distribution is centred on (n,)."""
    n_own = len(CAUSAL)
    own, own_in = values[:, :n_own], inside[:, :n_own]
    med_cols = [CAUSAL.index(o) for o in MED]
    pred = _med(*(own[:, i] for i in med_cols), *(own_in[:, i] for i in med_cols))
    out = [(own - pred[:, None]) * own_in, pred[:, None]]
    for q in range(plane):
        cols = slice(n_own + len(CROSS) * q, n_own + len(CROSS) * (q + 1))
        v, v_in = values[:, cols], inside[:, cols]
        centre = v[:, :1]
        pred_q = _med(*(v[:, i] for i in (1, 2, 3)), *(v_in[:, i] for i in (1, 2, 3)))
        out += [centre - pred_q[:, None], centre - pred[:, None], (v[:, 1:] - centre) * v_in[:, 1:]]
    return np.concatenate(out, axis=1), pred
