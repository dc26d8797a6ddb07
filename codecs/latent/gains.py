"""Gain units between quality levels: a table with one row per level, interpolated geometrically
(linearly in the log domain) at real qualities, so one set of weights serves every rate."""
from __future__ import annotations

import torch


def interpolate_levels(log_table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """``exp`` of the rows of ``log_table`` (levels first) interpolated at 0-based real qualities
    (B,), clamped to the levels; returns (B, *row shape)."""
    levels = log_table.shape[0]
    q = quality.float().clamp(0, levels - 1)
    lo = q.floor().long().clamp(max=max(levels - 2, 0))
    hi = (lo + 1).clamp(max=levels - 1)
    t = (q - lo.float()).view(-1, *([1] * (log_table.dim() - 1)))
    return torch.exp(log_table[lo] * (1 - t) + log_table[hi] * t)
