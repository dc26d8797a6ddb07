"""Tile-by-tile evaluation of fully convolutional networks, for bounded memory on large inputs.

The input is cut into square tiles, each evaluated with a surrounding margin at least as
wide as the network's receptive field and cropped back, so the result equals the
whole-tensor result (exactly, for the fixed-point entropy networks; up to float rounding
for the image transforms).
"""
from __future__ import annotations

from typing import Callable

import torch


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: float, tile: int,
              margin: int) -> torch.Tensor:
    """``fn(x)`` for an (N, C, H, W) ``x``, computed on ``tile``-sized pieces with ``margin`` context.

    ``scale`` is the ratio of output to input size (e.g. 1/16 for an analysis transform);
    ``tile * scale`` and ``margin * scale`` must be whole numbers."""
    _, _, h, w = x.shape
    if h <= tile + 2 * margin and w <= tile + 2 * margin:
        return fn(x)
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            t0, l0 = max(top - margin, 0), max(left - margin, 0)
            part = fn(x[:, :, t0:min(top + tile + margin, h), l0:min(left + tile + margin, w)])
            if out is None:
                out = part.new_empty(part.shape[0], part.shape[1], round(h * scale), round(w * scale))
            th, tw = min(tile, h - top), min(tile, w - left)
            oy, ox = round((top - t0) * scale), round((left - l0) * scale)
            out[:, :, round(top * scale):round((top + th) * scale), round(left * scale):round((left + tw) * scale)] = \
                part[:, :, oy:oy + round(th * scale), ox:ox + round(tw * scale)]
    return out
