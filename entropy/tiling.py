"""Tile-by-tile evaluation of fully convolutional networks, for bounded memory on large inputs.

The input is cut into tiles, each evaluated with a surrounding margin at least as
wide as the network's receptive field and cropped back, so the result equals the
whole-tensor result (exactly, for the fixed-point entropy networks; up to float rounding
for the image transforms).
"""
from __future__ import annotations

from typing import Callable

import torch


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale, tile, margin) -> torch.Tensor:
    """``fn(x)`` for an (N, C, H, W) ``x``, computed on ``tile``-sized pieces with ``margin`` context.

    ``scale`` is the ratio of output to input size (e.g. 1/16 for an analysis transform);
    ``tile * scale`` and ``margin * scale`` must be whole numbers.  Each of ``scale``, ``tile``
    and ``margin`` is one number for both axes or an (H, W) pair."""
    (sh, sw), (th_max, tw_max), (mh, mw) = _pair(scale), _pair(tile), _pair(margin)
    _, _, h, w = x.shape
    if h <= th_max + 2 * mh and w <= tw_max + 2 * mw:
        return fn(x)
    out = None
    for top in range(0, h, th_max):
        for left in range(0, w, tw_max):
            t0, l0 = max(top - mh, 0), max(left - mw, 0)
            part = fn(x[:, :, t0:min(top + th_max + mh, h), l0:min(left + tw_max + mw, w)])
            if out is None:
                out = part.new_empty(part.shape[0], part.shape[1], round(h * sh), round(w * sw))
            th, tw = min(th_max, h - top), min(tw_max, w - left)
            oy, ox = round((top - t0) * sh), round((left - l0) * sw)
            out[:, :, round(top * sh):round((top + th) * sh), round(left * sw):round((left + tw) * sw)] = \
                part[:, :, oy:oy + round(th * sh), ox:ox + round(tw * sw)]
    return out
