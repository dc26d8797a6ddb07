"""The hyper-latent: ``z = h_a(y)`` summarises a latent, is coded with a learned factorized prior,
and ``h_s(z_hat)`` gives the entropy parameters of ``y`` (Ballé et al. 2018).

:func:`hyper_forward` is the training (and evaluation) forward: likelihoods of ``z`` under the
trainable density and ``h_s`` in float.  :class:`HyperLatentCodec` is the exact coding of the same
thing: ``z`` rounded around the stored prior's medians and range-coded with its tables, ``h_s`` in
fixed point (:class:`ncodec.entropy.FixedPointNet`), so encoder and decoder compute the same
integers on any machine.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..entropy import FactorizedPrior, FixedPointNet, SymbolDecoder, SymbolEncoder
from .likelihoods import bottleneck_likelihood
from .quantizers import Quantizer


def hyper_forward(h_a: nn.Module, h_s: nn.Module, bottleneck, y: torch.Tensor, quantizer: Quantizer
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Likelihoods of ``z = h_a(y)`` under the CompressAI ``EntropyBottleneck`` and ``h_s`` of the
    quantized ``z`` (``quantizer`` applied around the density's medians), both float32 outside
    autocast, as the coder computes them."""
    z = h_a(y)
    with torch.autocast(device_type=y.device.type, enabled=False):
        medians = bottleneck._get_medians().detach()
        z_rate, z_hat = quantizer(z.float() - medians)
        return bottleneck_likelihood(bottleneck, z_rate + medians), h_s(z_hat + medians)


class HyperLatentCodec:
    """Exact coding of the hyper-latent of a latent ``y`` (``h_a`` float, encoder only; ``h_s`` in
    fixed point on :attr:`device`, the CPU until :meth:`to` moves it)."""

    def __init__(self, h_a, h_s: nn.Sequential, prior: FactorizedPrior):
        self.h_a, self.h_s, self.prior = h_a, FixedPointNet(h_s), prior
        self.device = torch.device("cpu")

    def to(self, device) -> "HyperLatentCodec":
        self.device = torch.device(device)
        return self

    @property
    def channels(self) -> int:
        """Channels of ``z``."""
        return len(self.prior.medians_fixed)

    @torch.no_grad()
    def compress(self, y: torch.Tensor, enc: SymbolEncoder) -> tuple[torch.Tensor, float]:
        """Code ``z`` of ``y`` into ``enc``; returns ``h_s``'s fixed-point output and z's ideal bits."""
        z_sym = self.prior.quantize(self.h_a(y).float())
        bits = self.prior.encode(enc, z_sym)
        return self._features(z_sym), bits

    def decompress(self, dec: SymbolDecoder, shape: tuple) -> torch.Tensor:
        """``h_s``'s fixed-point output for the ``z`` symbols of ``shape`` (N, C, H, W) read from ``dec``."""
        return self._features(self.prior.decode(dec, shape))

    def _features(self, z_sym: np.ndarray) -> torch.Tensor:
        return self.h_s(self.prior.dequantize_fixed(z_sym).to(self.device))
