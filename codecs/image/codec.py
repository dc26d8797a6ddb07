"""The learned image codec: pixels <-> container bytes.

``ImageCodec`` wires one model's transforms (run on CPU or CUDA, float) to its latent
codec (exact fixed-point entropy parameters on the same device, range coding on the CPU)
and to the container.  Images of any size
from 1x1 are padded by edge replication to a multiple of 64 and cropped after decoding.

Channels: RGB is coded as is; grayscale is coded as RGB and returned as one channel;
RGBA codes the colour lossy and the alpha plane *losslessly* in its own section.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from ..container import Container
from ..entropy import EntropyCodingError, SymbolDecoder, SymbolEncoder
from ..entropy.tiling import run_tiled
from ..entropy.tables import stack_rows
from ..errors import CorruptStreamError, InputError, ModelMismatchError, UsageError
from .models import FactorizedLatentCodec, HyperpriorLatentCodec, SliceLatentCodec, run_inference

PAD = 64                     # images are padded to this multiple (latent 1/16, hyper-latent 1/64)
MAX_PIXELS = 200_000_000     # like Pillow's decompression-bomb guard: refuse larger images
MAX_SIDE = 1 << 16
MAX_REFINE_STEPS = 10_000
PIXEL_CENTRE = 0.5           # bf16 synthesis: the output layer computes pixels minus this (see _synthesise)


def _alpha_table(hist: list[int]):
    counts = np.asarray(hist, dtype=np.float64)
    return stack_rows([np.append(counts / counts.sum(), 1e-12)], [0])


def encode_alpha(alpha: np.ndarray) -> tuple[bytes, list[int]]:
    """Lossless alpha: left-neighbour differences mod 256, coded with their own histogram."""
    diff = (alpha.astype(np.int16) - np.pad(alpha, ((0, 0), (1, 0)))[:, :-1]) % 256
    hist = np.bincount(diff.ravel(), minlength=256).tolist()
    enc = SymbolEncoder()
    enc.encode(diff, np.zeros_like(diff), _alpha_table(hist))
    return enc.finish(), hist


def decode_alpha(data: bytes, hist: list[int], h: int, w: int) -> np.ndarray:
    if len(hist) != 256 or min(hist) < 0 or sum(hist) != h * w:
        raise CorruptStreamError("ncodec file has an invalid alpha histogram")
    diff = SymbolDecoder(data).decode(np.zeros((h, w), np.int64), _alpha_table(hist))
    return (np.cumsum(diff, axis=1) % 256).astype(np.uint8)


@contextmanager
def stream_errors():
    """Reading a stream's sections: a missing section or undecodable symbols become CorruptStreamError."""
    try:
        yield
    except KeyError as exc:
        raise CorruptStreamError(f"ncodec file lacks its {exc.args[0]!r} section") from None
    except EntropyCodingError as exc:
        raise CorruptStreamError(f"ncodec file is corrupt: {exc}") from None


def image_container(model: str, digest: bytes, sections: dict, q: float, arr: np.ndarray, channels: int,
                    fields: dict | None = None) -> Container:
    """The container of an image coded by ``model``: its size, channels and quality, the codec's
    ``sections`` and ``fields``, and (when ``channels`` is 4) the alpha plane of ``arr``, coded losslessly."""
    h, w = arr.shape[:2]
    fields = {"w": w, "h": h, "ch": channels, "q": int(round(q * 1000)), **(fields or {})}
    if channels == 4:
        sections = {**sections}
        sections["alpha"], fields["ahist"] = encode_alpha(arr[:, :, 3])
    return Container("image", model, digest, fields, sections)


def declared_size(c: Container, pixel_limit: int | None = None) -> tuple[int, int, int]:
    """Width, height and channels of an image stream; CorruptStreamError unless every side is within
    ``MAX_SIDE``, the pixels within ``MAX_PIXELS`` (and ``pixel_limit``) and the channels 1, 3 or 4."""
    w, h, channels = (c.require(k) for k in ("w", "h", "ch"))
    limit = MAX_PIXELS if pixel_limit is None else min(pixel_limit, MAX_PIXELS)
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE and w * h <= limit) or channels not in (1, 3, 4):
        raise CorruptStreamError(f"ncodec file declares an invalid image size {w}x{h}x{channels}")
    return w, h, channels


def restore_channels(rgb: np.ndarray, c: Container, channels: int) -> np.ndarray:
    """A decoded h x w x 3 image back to the channels it was given with: grayscale as the mean of
    the three, RGBA with the stream's lossless alpha plane."""
    if channels == 1:
        return np.round(rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    if channels == 4:
        alpha = decode_alpha(c.section("alpha"), c.require("ahist", list), *rgb.shape[:2])
        return np.concatenate([rgb, alpha[:, :, None]], axis=2)
    return rgb


def as_image_array(image) -> tuple[np.ndarray, int]:
    """Accept HxW, HxWxC uint8 arrays or CxH xW / 1xCxHxW float tensors in [0, 1];
    return an HxWxC uint8 array (C in 1, 3, 4) and the channel count to restore."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
            raise InputError(f"image tensor must be CxHxW or 1xCxHxW with C in 1, 3, 4; got {tuple(image.shape)}")
        image = (t.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(f"image arrays must be uint8 (got {a.dtype}); pass floats as a torch tensor in [0, 1]")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"image must be HxW, HxWx1, HxWx3 or HxWx4; got shape {a.shape}")
    h, w = a.shape[:2]
    if h < 1 or w < 1:
        raise InputError("image is empty (zero width or height)")
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
        raise InputError(f"image of {w}x{h} exceeds ncodec's limit of {MAX_PIXELS} pixels / {MAX_SIDE} per side")
    return a, a.shape[2]


class ImageCodec:
    """A learned image codec (one model, every quality).

    Images larger than one tile run through the transforms tile by tile (the model's ``tiling``:
    ``tile`` latent positions of ``stride`` pixels each, with ``margin`` positions of context on each
    side, more than the transforms' receptive fields), so memory stays bounded whatever the image size."""

    modality = "image"

    def __init__(self, name: str, model, latent, digest: bytes, device: str = "cpu", description: str = "",
                 precision: str | None = None, compile: bool = False):
        """``model`` provides ``g_a``, ``g_s``, ``gains(q)`` and ``config``; ``latent`` is a latent codec.

        ``precision`` of the transforms: "float32" (default on CPU) or "bfloat16" (default on CUDA:
        channels_last and bf16 autocast; about 2.5x faster on CPUs with AVX512-BF16 or AMX, for
        about -0.04 dB). The stream's entropy path is exact either way, so both decode each
        other's streams. ``compile``: run the transforms through ``torch.compile`` (the first
        image of each size pays the compilation, tens of seconds; later ones run faster)."""
        self.name, self.model, self.digest, self.description = name, model, digest, description
        self.config = model.config
        self.device = torch.device(device)
        self.precision = precision or ("bfloat16" if self.device.type == "cuda" else "float32")
        if self.precision not in ("float32", "bfloat16"):
            raise UsageError(f"precision must be 'float32' or 'bfloat16', not {self.precision!r}")
        self.model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.latent = latent.to(self.device)
        self.stride = model.stride
        self.tile, self.margin = model.tiling
        # the synthesis's output layer with its bias lowered by PIXEL_CENTRE (bf16 decoding, see _synthesise)
        self._centred_output = None
        if getattr(self.model.g_s[-1], "bias", None) is not None:
            self._centred_output = copy.deepcopy(self.model.g_s[-1])
            self._centred_output.bias.data -= PIXEL_CENTRE
        self.compiled = bool(compile)
        self._run_analysis, self._run_synthesis = self._analyse, self._synthesise
        if self.compiled:
            self._run_analysis, self._run_synthesis = torch.compile(self._analyse), torch.compile(self._synthesise)

    @property
    def qualities(self) -> list[float]:
        """Valid quality levels (1 = smallest files); hyperprior/slice models also take values between."""
        return [float(q) for q in range(1, self.config.levels + 1)]

    def _quality(self, quality) -> float:
        q = float(self.config.levels if quality is None else quality)
        if not 1 <= q <= self.config.levels:
            raise UsageError(f"quality must be between 1 and {self.config.levels} for model {self.name!r}")
        if self.config.per_level_priors and q != int(q):
            raise UsageError(f"the {self.config.arch} model only has integer qualities")
        return q

    def _gains(self, q: float):
        return self.model.gains(torch.tensor([q - 1.0], device=self.device))

    def _analyse(self, x: torch.Tensor) -> torch.Tensor:
        """g_a in this codec's precision, channels_last (1.5x faster than contiguous float32 on an
        AVX2 CPU). In bfloat16 its last layer stays float32: the latent's rounding needs it."""
        x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "float32":
            return run_inference(self.model.g_a, x).float()
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            hidden = run_inference(self.model.g_a[:-1], x)
        return run_inference(self.model.g_a[-1:], hidden.float()).float()

    def _synthesise(self, y: torch.Tensor) -> torch.Tensor:
        """g_s in this codec's precision, channels_last. In bfloat16 it runs in bf16 to the end, the
        output layer computing pixels minus PIXEL_CENTRE so that bf16's rounding of an output in
        [0, 1] stays within 2**-10 (measured on 4 Kodak images: within 0.025 dB of a float32 output
        layer, 18 % faster decoding on an AMX CPU). A synthesis that ends in a transform without bias
        (WaLLoC's inverse wavelet packets) finishes in float32."""
        y = y.contiguous(memory_format=torch.channels_last)
        if self.precision == "float32":
            return run_inference(self.model.g_s, y).float()
        if self._centred_output is None:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                hidden = run_inference(self.model.g_s[:-1], y)
            return run_inference(self.model.g_s[-1:], hidden.float()).float()
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            hidden = run_inference(self.model.g_s[:-1], y)
            return run_inference(self._centred_output, hidden).float().add_(PIXEL_CENTRE)

    @torch.no_grad()
    def encode(self, image, quality: float | None = None, refine: int = 0) -> bytes:
        """Compress an image (see :func:`as_image_array`) into container bytes.

        ``refine`` > 0 optimises the latent for this image in that many steps before coding
        (see :mod:`ncodec.image.refine`): smaller files or higher PSNR for more encoding time;
        the stream and the decoder are unchanged."""
        q = self._quality(quality)
        if self.model.g_a is None:
            raise UsageError(f"codec {self.name!r} was loaded for decoding only")
        if not isinstance(refine, int) or not 0 <= refine <= MAX_REFINE_STEPS:
            raise UsageError(f"refine must be a whole number of steps from 0 to {MAX_REFINE_STEPS}")
        arr, channels = as_image_array(image)
        h, w = arr.shape[:2]
        rgb = np.repeat(arr, 3, axis=2) if channels == 1 else arr[:, :, :3]
        x = self.padded_input(rgb)
        pad = (0, x.shape[3] - w, 0, x.shape[2] - h)
        y = self.analyse(x, q)
        if refine:
            from .refine import refine_latent

            mask = F.pad(torch.ones_like(x[:, :1, :h, :w]), pad)
            refined = refine_latent(self.model, x, mask, q, refine, self.tile, self.margin, self.stride)
        del x
        data = self._to_stream(y, q, arr, channels)
        if refine:      # keep the refined latent only if it wins by the real measure: file size and decoded pixels
            other = self._to_stream(refined, q, arr, channels)
            if self._real_loss(other, rgb, q) < self._real_loss(data, rgb, q):
                data = other
        return data

    def padded_input(self, rgb: np.ndarray) -> torch.Tensor:
        """An h x w x 3 uint8 image as the transforms take it: (1, 3, H, W) float in [0, 1] on this
        codec's device, padded by edge replication to a multiple of PAD."""
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).to(self.device).permute(2, 0, 1)[None]
        return F.pad(x.float().div_(255), (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")

    def analyse(self, x: torch.Tensor, q: float) -> torch.Tensor:
        """Encoding's transform stage: the gain-scaled latent of a padded (1, 3, H, W) image in [0, 1]
        at quality ``q``, tile by tile."""
        gain, _ = self._gains(q)
        return run_tiled(self._run_analysis, x, 1 / self.stride, self.stride * self.tile,
                         self.stride * self.margin) * gain

    def _to_stream(self, y: torch.Tensor, q: float, arr: np.ndarray, channels: int) -> bytes:
        """Code a gain-scaled latent into container bytes."""
        sections, _ = self.latent.compress(y, level=int(q) - 1)
        return self.pack(sections, q, arr, channels)

    def pack(self, sections: dict, q: float, arr: np.ndarray, channels: int) -> bytes:
        """Encoding's last stage: the latent codec's sections of image ``arr`` (and its alpha plane,
        coded losslessly, when ``channels`` is 4) in container bytes."""
        return image_container(self.name, self.digest, sections, q, arr, channels).to_bytes()

    def _real_loss(self, data: bytes, rgb: np.ndarray, q: float) -> float:
        """lambda(q) * MSE (8-bit scale) + bits per pixel of a whole stream, as refinement optimises it."""
        decoded = self.decode(data)[:, :, :3].astype(np.float64)
        mse = float(((decoded - rgb) ** 2).mean()) if decoded.shape == rgb.shape else \
            float(((np.repeat(decoded[:, :, :1], 3, axis=2) - rgb) ** 2).mean())
        lam = float(self.model.lambdas_for(torch.tensor([q - 1.0]))[0])
        return lam * mse + 8 * len(data) / (rgb.shape[0] * rgb.shape[1])

    def check_stream(self, c: Container) -> None:
        """Refuse streams made by another codec, model or weights, with a clear reason."""
        c.check_made_by("image", self.name, self.digest)

    @torch.no_grad()
    def decode(self, data: bytes | Container) -> np.ndarray:
        """Container bytes -> HxWxC uint8 image (C as given to encode; grayscale as HxWx1)."""
        c = data if isinstance(data, Container) else Container.from_bytes(data)
        w, h, channels, q = self.stream_header(c)
        with stream_errors():
            return self._decode(c, self.latent_shape(h, w), q, h, w, channels)

    def stream_header(self, c: Container) -> tuple[int, int, int, float]:
        """Width, height, channels and quality of a stream this codec made, validated."""
        self.check_stream(c)
        w, h, channels = declared_size(c)
        q = c.require("q") / 1000
        if not 1 <= q <= self.config.levels:
            raise CorruptStreamError("ncodec file declares an invalid quality")
        return w, h, channels, q

    def latent_shape(self, h: int, w: int) -> tuple:
        """The latent's shape (1, M, H, W) for an image of h x w pixels (padded to a multiple of PAD)."""
        return 1, self.config.M, (h + (-h) % PAD) // self.stride, (w + (-w) % PAD) // self.stride

    def synthesise(self, y_hat: torch.Tensor, q: float, h: int, w: int) -> np.ndarray:
        """Decoding's transform stage: the h x w x 3 uint8 image of a decoded gain-scaled latent at
        quality ``q``, tile by tile."""
        _, inv_gain = self._gains(q)
        x_hat = run_tiled(self._run_synthesis, y_hat.to(self.device) * inv_gain, self.stride, self.tile,
                          self.margin)[0, :, :h, :w]
        return x_hat.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def _decode(self, c: Container, shape: tuple, q: float, h: int, w: int, channels: int) -> np.ndarray:
        out = self.synthesise(self.latent.decompress(c.sections, shape, level=int(q) - 1), q, h, w)
        return restore_channels(out, c, channels)


def latent_codec_for(model, priors: dict):
    """The latent codec matching one of ncodec's own architectures."""
    arch = model.config.arch
    if model.config.per_level_priors:
        return FactorizedLatentCodec([priors[f"prior{i}"] for i in range(model.config.levels)])
    if arch == "hyperprior":
        return HyperpriorLatentCodec(model.h_a, model.h_s, priors["prior_z"])
    if arch == "slice":
        return SliceLatentCodec(model, priors["prior_z"])
    raise ModelMismatchError(f"unknown image architecture {arch!r}")
