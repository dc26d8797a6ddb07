"""Latent codecs: the quantizer + entropy model + coder stage between the image transforms.

Each one turns an analysis latent ``y`` into byte sections plus the model's ideal bit count
(``compress``) and byte sections back into the quantized latent ``y_hat`` (``decompress``),
in the composable style of CompressAI's ``latent_codecs``.  Every number that reaches the range coder comes from exact fixed-point
networks (:class:`ncodec.entropy.FixedPointNet`), so a stream encoded on one machine or
device decodes bit-exactly on any other.  Those networks run on the codec's device (float64
holding integers is exact on a GPU too: any summation order gives the same integers); the
range coder and its table lookups run on the CPU.  The reconstruction refinements (latent
residual prediction) run in float on the transform device.
"""
from __future__ import annotations

import numpy as np
import torch

from ..entropy import FactorizedPrior, FixedPointNet, GaussianConditional, SymbolDecoder, SymbolEncoder
from ..entropy import from_fixed
from ..entropy.fixedpoint import ACT_FRAC
from .models import anchor_mask

_ONE = float(1 << ACT_FRAC)


def _symbols_to_fixed(symbols: np.ndarray, means_fixed: torch.Tensor) -> torch.Tensor:
    """Decoded symbols + the exact fixed-point means -> the quantized latent in fixed point (in place: large latents)."""
    return torch.from_numpy(symbols).to(means_fixed.device, torch.float64).mul_(_ONE).add_(means_fixed)


def _residual_symbols(y: torch.Tensor, means_fixed: torch.Tensor) -> np.ndarray:
    """Encoder side: round(y - mean) with the exact fixed-point mean (in place: large latents)."""
    d = y.detach().to(means_fixed.device, torch.float64, copy=True)
    return d.sub_(means_fixed, alpha=1 / _ONE).round_().long().cpu().numpy()


def _decode_z(z_prior: FactorizedPrior, sections: dict, y_shape: tuple) -> np.ndarray:
    """Hyper-latent symbols; z has 1/4 of y's resolution."""
    n, _, h, w = y_shape
    return z_prior.decode(SymbolDecoder(sections["z"]), (n, len(z_prior.medians_fixed), h // 4, w // 4))


class _LatentCodec:
    """Where the exact fixed-point networks run (the CPU until :meth:`to` moves them)."""

    device = torch.device("cpu")

    def to(self, device) -> "_LatentCodec":
        self.device = torch.device(device)
        return self

    def _hyper_features(self, z_sym: np.ndarray) -> torch.Tensor:
        """Codecs with a hyper-prior (``z_prior``, fixed-point ``h_s``): h_s of the hyper-latent symbols."""
        return self.h_s(self.z_prior.dequantize_fixed(z_sym).to(self.device))


class FactorizedLatentCodec(_LatentCodec):
    """y coded directly with a per-channel factorized prior (one prior per quality level)."""

    def __init__(self, priors: list[FactorizedPrior]):
        self.priors = priors

    def compress(self, y: torch.Tensor, level: int) -> tuple[dict, float]:
        prior = self.priors[level]
        sym = prior.quantize(y.cpu())
        enc = SymbolEncoder()
        bits = prior.encode(enc, sym)
        return {"y": enc.finish()}, bits

    def decode_quantized(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        """The exact quantized latent (fixed point), before any float refinement."""
        prior = self.priors[level]
        return prior.dequantize_fixed(prior.decode(SymbolDecoder(sections["y"]), shape))

    def decompress(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        return from_fixed(self.decode_quantized(sections, shape, level))


class HyperpriorLatentCodec(_LatentCodec):
    """Mean-scale hyperprior: z with a factorized prior, y with Gaussians whose mean and
    scale come from the fixed-point hyper synthesis.  ``layout`` names the order of the
    hyper-synthesis outputs ("means,scales", "scales,means" or "scales"); ``abs_input`` feeds
    |y| to the hyper analysis (Ballé 2018's scale hyperprior)."""

    def __init__(self, h_a, h_s, z_prior: FactorizedPrior, layout: str = "means,scales", abs_input: bool = False):
        self.h_a = (lambda y: h_a(y.abs())) if abs_input else h_a
        self.h_s = FixedPointNet(h_s)
        self.z_prior = z_prior
        self.gaussian = GaussianConditional()
        self.layout = layout

    def _params(self, z_sym: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._hyper_features(z_sym)
        if self.layout == "scales":
            return torch.zeros_like(out), out
        a, b = out.chunk(2, dim=1)
        return (a, b) if self.layout == "means,scales" else (b, a)

    def compress(self, y: torch.Tensor, level: int = 0) -> tuple[dict, float]:
        z_sym = self.z_prior.quantize(self.h_a(y).float())
        means, scales = self._params(z_sym)
        y_sym = _residual_symbols(y, means)
        del means
        ez, ey = SymbolEncoder(), SymbolEncoder()
        bits = self.z_prior.encode(ez, z_sym) + self.gaussian.encode(ey, y_sym, scales)
        return {"z": ez.finish(), "y": ey.finish()}, bits

    def decode_quantized(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        """The exact quantized latent (fixed point)."""
        means, scales = self._params(_decode_z(self.z_prior, sections, shape))
        return _symbols_to_fixed(self.gaussian.decode(SymbolDecoder(sections["y"]), scales), means)

    def decompress(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        return from_fixed(self.decode_quantized(sections, shape, level))


class SliceLatentCodec(_LatentCodec):
    """Channel-slice context model: slice i's mean and scale come (in fixed point) from the
    hyper features and the slices before it; with a checkerboard context each slice is coded in
    two passes, its anchors first and then the other positions with the decoded anchors as
    spatial context.  Latent residual prediction refines the reconstruction in float afterwards."""

    def __init__(self, model, z_prior: FactorizedPrior):
        self.h_a = model.h_a
        self.h_s = FixedPointNet(model.h_s)
        self.context = [FixedPointNet(net) for net in model.context]
        self.checkerboard = model.config.checkerboard
        if self.checkerboard:
            self.spatial = [FixedPointNet(net) for net in model.spatial]
            self.fuse = [FixedPointNet(net) for net in model.fuse]
        self.lrp = model.lrp
        self.offsets = model.offsets
        self.z_prior = z_prior
        self.gaussian = GaussianConditional()

    def _context_buffer(self, hyper: torch.Tensor) -> tuple[torch.Tensor, int]:
        """One fixed-point tensor holding the hyper features and then every slice as it is coded, and
        the hyper features' channel count: slice i's context network reads a leading channel range
        of it (a view), so the growing context is never concatenated into copies (large images)."""
        n, c, h, w = hyper.shape
        buf = hyper.new_empty((n, c + self.offsets[-1], h, w))
        buf[:, :c] = hyper
        return buf, c

    def _slice_channels(self, c: int) -> list[tuple[int, int]]:
        """Each slice's channel range in a context buffer whose hyper features take ``c`` channels."""
        return [(c + lo, c + hi) for lo, hi in zip(self.offsets[:-1], self.offsets[1:])]

    def _refine(self, buf: torch.Tensor, c: int) -> torch.Tensor:
        """Latent residual prediction over a decoded context buffer -> the float latent."""
        feats = from_fixed(buf)
        out = []
        for lrp, (lo, hi) in zip(self.lrp, self._slice_channels(c)):
            out.append(feats[:, lo:hi] + 0.5 * torch.tanh(lrp(feats[:, :hi]).float()))
        return torch.cat(out, dim=1)

    def _fill_slices(self, buf: torch.Tensor, c: int, code) -> None:
        """Fill the context buffer slice by slice.  ``code(i, means, scales, where)`` codes (encoder)
        or decodes (decoder) slice ``i``'s symbols at the positions of the (H, W) mask ``where`` (None:
        all) in that order, and returns the slice's symbols (other positions: anything)."""
        anchors = anchor_mask(*buf.shape[2:], device=buf.device) if self.checkerboard else None
        for i, (ctx, (lo, hi)) in enumerate(zip(self.context, self._slice_channels(c))):
            params = ctx(buf[:, :lo])
            means, scales = params.chunk(2, dim=1)
            if anchors is None:
                buf[:, lo:hi] = _symbols_to_fixed(code(i, means, scales, None), means)
                continue
            first = _symbols_to_fixed(code(i, means, scales, anchors), means).mul_(anchors)
            params = params + self.fuse[i](torch.cat([self.spatial[i](first), params], dim=1)).mul_(~anchors)
            means, scales = params.chunk(2, dim=1)
            second = _symbols_to_fixed(code(i, means, scales, ~anchors), means)
            buf[:, lo:hi] = torch.where(anchors, first, second)

    def compress(self, y: torch.Tensor, level: int = 0) -> tuple[dict, float]:
        z_sym = self.z_prior.quantize(self.h_a(y).float())
        buf, c = self._context_buffer(self._hyper_features(z_sym))
        ez, ey = SymbolEncoder(), SymbolEncoder()
        bits = [self.z_prior.encode(ez, z_sym)]
        slices = self._slice_channels(0)

        def code(i, means, scales, where):
            sym = _residual_symbols(y[:, slices[i][0]:slices[i][1]], means)
            if where is None:
                bits.append(self.gaussian.encode(ey, sym, scales))
            else:
                bits.append(self.gaussian.encode(ey, sym[:, :, where.cpu().numpy()], scales[:, :, where]))
            return sym

        self._fill_slices(buf, c, code)
        return {"z": ez.finish(), "y": ey.finish()}, sum(bits)

    def _decode_buffer(self, sections: dict, shape: tuple) -> tuple[torch.Tensor, int]:
        buf, c = self._context_buffer(self._hyper_features(_decode_z(self.z_prior, sections, shape)))
        dy = SymbolDecoder(sections["y"])

        def code(i, means, scales, where):
            if where is None:
                return self.gaussian.decode(dy, scales)
            sym = np.zeros(scales.shape, dtype=np.int64)
            sym[:, :, where.cpu().numpy()] = self.gaussian.decode(dy, scales[:, :, where])
            return sym

        self._fill_slices(buf, c, code)
        return buf, c

    def decode_quantized(self, sections: dict, shape: tuple, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact fixed-point hyper features and quantized latent, before latent residual prediction."""
        buf, c = self._decode_buffer(sections, shape)
        return buf[:, :c], buf[:, c:]

    def decompress(self, sections: dict, shape: tuple, level: int = 0) -> torch.Tensor:
        return self._refine(*self._decode_buffer(sections, shape))
