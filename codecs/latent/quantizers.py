"""Stand-ins for rounding a latent during training, and rounding itself.

A quantizer maps a (mean-removed) latent ``v`` to two tensors: the values the rate term sees and
the values the synthesis sees.  Training uses additive noise for the rate and straight-through
rounding for synthesis; evaluation rounds both, as the coder does; encoder-side refinement passes
its own soft rounding.
"""
from __future__ import annotations

from typing import Callable

import torch

Quantizer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def training_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive uniform noise for the rate, straight-through rounding for synthesis."""
    return v + torch.empty_like(v).uniform_(-0.5, 0.5), ste_round(v)


def rounding_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounding for both: what the coder codes."""
    r = torch.round(v)
    return r, r


def noise_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive noise for both (how a hyper-latent is trained, as in CompressAI)."""
    n = v + torch.empty_like(v).uniform_(-0.5, 0.5)
    return n, n


def hard_quantizer(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through rounding for both: the values the coder sees, with gradients for the means
    and scales that predict them (the "hard" fine-tuning phase of Guo et al. 2021, soft-then-hard)."""
    r = ste_round(v)
    return r, r
