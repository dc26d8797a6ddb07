"""The overfitted image codec: each image gets its own small decoder, fitted at encoding time.

Encoding fits an :class:`~.model.OverfitModel` to the image (:mod:`.fit`), quantises its weights
(:mod:`.weights`) and codes weights and integer latents into one range-coded section; decoding reads
the weights, decodes the latents in wavefronts with the exact ARM (:mod:`.arm`) and runs the float
synthesis.  Same container, channels handling and size limits as the other image codecs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ...container import Container
from ...entropy import EntropyCodingError, SymbolDecoder, SymbolEncoder
from ...errors import CorruptStreamError, InputError, UsageError
from ...training import named_preset
from ..app import OVERFIT
from ..codec import as_image_array, declared_size, image_container, restore_channels
from ..models import DEFAULT_LAMBDAS
from . import weights
from .arm import LatentCoder, latent_tables
from .fit import DEFAULT_PRESET, PRESETS, Preset, fit
from .model import OverfitConfig, OverfitModel, grid_shapes

NAME = OVERFIT
STREAM_VERSION = 1
MAX_PIXELS = 1 << 24         # 16.7 megapixels: fitting is hours beyond (minutes a megapixel on a CPU)
NARROW_ARM_BELOW = 3.5       # qualities below this fit an ARM of 8 hidden units instead of 16


def _digest() -> bytes:
    """Identifies the codec's fixed parts (stream layout and latent tables) in every stream."""
    return hashlib.sha256(b"ncodec-overfit-%d" % STREAM_VERSION + latent_tables()[0].digest()).digest()[:8]


def quality_lambda(q: float) -> float:
    """The rate-distortion lambda of quality ``q`` (1-6, real values interpolated geometrically),
    the same scale as the amortised image codecs."""
    logs = np.log(DEFAULT_LAMBDAS)
    lo = min(int(q) - 1, len(logs) - 2)
    return float(np.exp(logs[lo] + (q - 1 - lo) * (logs[lo + 1] - logs[lo])))


def model_config(q: float) -> OverfitConfig:
    """The architecture fitted at quality ``q``: at low rates a narrower ARM, whose weights cost
    less than its width earns (kodim23 at ``medium``: 6-7 % fewer bytes at qualities 2 and 3 for
    the same PSNR)."""
    return OverfitConfig(arm_hidden=8) if q < NARROW_ARM_BELOW else OverfitConfig()


class OverfitCodec:
    """Encodes by fitting a model to each image (``preset`` fast, medium or slow trades encoding
    time for size); decodes on any machine bit-exactly up to the float synthesis."""

    modality = "image"
    name = NAME
    description = "overfitted per image (C3/Cool-chic family): no pretraining, minutes of fitting (--preset)"

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self.digest = _digest()

    @property
    def qualities(self) -> list[float]:
        return [float(q) for q in range(1, len(DEFAULT_LAMBDAS) + 1)]

    def _quality(self, quality) -> float:
        q = float(len(DEFAULT_LAMBDAS) if quality is None else quality)   # like the other image codecs
        if not 1 <= q <= len(DEFAULT_LAMBDAS):
            raise UsageError(f"quality must be between 1 and {len(DEFAULT_LAMBDAS)} for codec {NAME!r}")
        return q

    def encode(self, image, quality: float | None = None, preset: str | Preset | None = None, seed: int = 0,
               checkpoint: str | Path | None = None, progress: bool = False) -> bytes:
        """Fit, quantise and code ``image`` (see :func:`~ncodec.image.codec.as_image_array`).

        ``preset``: "fast" (default), "medium" or "slow", or a :class:`~ncodec.image.overfit.fit.Preset`;
        ``checkpoint``: a file the fit is saved to every few minutes and resumed from;
        ``progress``: show a progress bar with the time left."""
        q = self._quality(quality)
        preset = named_preset(preset or DEFAULT_PRESET, PRESETS)
        arr, channels = as_image_array(image)
        if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
            raise InputError(f"the overfit codec codes images of up to {MAX_PIXELS} pixels; "
                             f"this one has {arr.shape[0] * arr.shape[1]} (use another codec)")
        rgb = np.repeat(arr, 3, axis=2) if channels == 1 else arr[:, :, :3]
        x = torch.from_numpy(np.array(rgb)).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        lam = quality_lambda(q)
        model = fit(x, lam, preset, seed=seed, config=model_config(q),
                    checkpoint=Path(checkpoint) if checkpoint else None, progress=progress)
        exponents = weights.quantise(weights.overfit_groups(model), weights.overfit_loss(model, x, lam),
                                     model.h * model.w)
        return self.pack(model.cpu(), exponents, q, arr, channels).to_bytes()

    def pack(self, model: OverfitModel, exponents: list[int], q: float, arr: np.ndarray, channels: int) -> Container:
        """The container of a fitted model whose weights are quantised with ``exponents``."""
        enc = SymbolEncoder()
        rows = weights.encode(weights.overfit_groups(model), exponents, enc)
        grids = [torch.round(g.detach())[0, 0].long().numpy() for g in model.grids]
        LatentCoder(model.arm, grid_shapes(model.h, model.w, model.config.levels)).encode(grids, enc)
        cfg = model.config
        fields = {"cfg": [STREAM_VERSION, cfg.levels, cfg.arm_hidden, cfg.synth_hidden], "wexp": exponents,
                  "wrow": rows}
        return image_container(NAME, self.digest, {"data": enc.finish()}, q, arr, channels, fields)

    def check_stream(self, c: Container) -> None:
        c.check_made_by("image", NAME, self.digest)

    @torch.no_grad()
    def decode(self, data: bytes | Container) -> np.ndarray:
        """Container bytes -> HxWxC uint8 image."""
        c = data if isinstance(data, Container) else Container.from_bytes(data)
        self.check_stream(c)
        w, h, channels = declared_size(c, MAX_PIXELS)
        cfg, exponents, rows = (c.require(k, list) for k in ("cfg", "wexp", "wrow"))
        if len(cfg) != 4 or cfg[0] != STREAM_VERSION or not (1 <= cfg[1] <= 8 and 1 <= cfg[2] <= 64 and 1 <= cfg[3] <= 64):
            raise CorruptStreamError("ncodec file declares an overfitted model this ncodec cannot build")
        if not weights.valid(exponents, rows):
            raise CorruptStreamError("ncodec file declares invalid weight quantisation")
        model = OverfitModel(h, w, OverfitConfig(*cfg[1:]))
        try:
            dec = SymbolDecoder(c.section("data"))
            weights.decode(weights.overfit_groups(model), exponents, rows, dec)
            grids = LatentCoder(model.arm, grid_shapes(h, w, model.config.levels)).decode(dec)
            latents = [torch.from_numpy(g).float()[None, None] for g in grids]
            rgb = model.synthesise(latents)[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0)
            return restore_channels(np.ascontiguousarray(rgb.numpy()), c, channels)
        except KeyError as exc:
            raise CorruptStreamError(f"ncodec file lacks its {exc.args[0]!r} section") from None
        except EntropyCodingError as exc:
            raise CorruptStreamError(f"ncodec file is corrupt: {exc}") from None
