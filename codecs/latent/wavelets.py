"""Wavelet packet transforms (WaLLoC's front end), for signals of one or two dimensions.

A full packet decomposition splits *every* band again at each level (not only the low band, as a
plain DWT does): ``levels`` levels turn each channel of a 1-D signal into ``2**levels`` bands, of a
2-D signal into ``4**levels`` bands, each ``2**levels`` times shorter along every axis.  The
transform is critically sampled (periodic extension: as many coefficients as samples) and
perfectly invertible, so a model that reads packets loses nothing before its own encoder.  The
single-level transforms are torchwavelets' (CDF 9/7, ``bior4.4``, by default); this module only
arranges their bands as channels.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

DEFAULT_WAVELET = "bior4.4"


def _single_level(dims: int):
    import torchwavelets as tw

    return (tw.dwt1d, tw.idwt1d) if dims == 1 else (tw.dwt2d, tw.idwt2d)


class WaveletPacket(nn.Module):
    """Analysis: (N, C, *S) -> (N, C * B, *S / 2**levels), B = 2**(dims*levels) bands per channel,
    every side a multiple of ``2**levels``.  :meth:`inverse` is the exact synthesis (up to float
    rounding).  No parameters or buffers (the filters come from torchwavelets on each call)."""

    def __init__(self, dims: int, levels: int, wavelet: str = DEFAULT_WAVELET):
        super().__init__()
        if dims not in (1, 2) or levels < 1:
            raise ValueError(f"wavelet packets need 1 or 2 dimensions and at least one level (got {dims}, {levels})")
        self.dims, self.levels, self.wavelet = dims, levels, wavelet
        self.split = 2**dims          # bands one level makes of one

    @property
    def stride(self) -> int:
        """Samples per coefficient along each axis."""
        return 2**self.levels

    def bands(self, channels: int) -> int:
        """Channels of the packet tensor of a ``channels``-channel signal."""
        return channels * self.split**self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dwt, _ = _single_level(self.dims)
        for _ in range(self.levels):
            with warnings.catch_warnings():   # short bands: periodic extension is the intended behaviour
                warnings.filterwarnings("ignore", message="Level value", category=UserWarning)
                low, (high,) = dwt(x, self.wavelet, "periodization", 1)
            high = high.unsqueeze(2) if self.dims == 1 else high     # (N, C, split-1, *S)
            x = torch.cat([low.unsqueeze(2), high], dim=2).flatten(1, 2)
        return x

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        _, idwt = _single_level(self.dims)
        for _ in range(self.levels):
            x = x.unflatten(1, (-1, self.split))
            high = x[:, :, 1] if self.dims == 1 else x[:, :, 1:]
            x = idwt((x[:, :, 0], [high]), self.wavelet, "periodization")
        return x


class PacketLayer(nn.Module):
    """A :class:`WaveletPacket` (``inverse``: its synthesis) as a layer on (N, C, H, W) tensors; a 1-D
    transform runs along W of tensors with H = 1 (how the codecs hold audio, so that one 2-D
    convolutional skeleton serves both)."""

    def __init__(self, packet: WaveletPacket, inverse: bool = False):
        super().__init__()
        self.packet, self.inverse = packet, inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        run = self.packet.inverse if self.inverse else self.packet
        if self.packet.dims == 2:
            return run(x)
        return run(x.squeeze(2)).unsqueeze(2)
