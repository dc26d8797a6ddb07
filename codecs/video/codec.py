"""The video codec: frames <-> container bytes.

Encoding fits a NeRV or HNeRV network to the clip (:mod:`.fit`), optionally prunes and
fine-tunes it, optionally fine-tunes it through the quantiser, then quantises and range-codes
every stored tensor (:mod:`.bitstream`).  The container carries the architecture (fields), the
tensor table (``meta``) and the coded symbols (``symbols``); decoding rebuilds the decoder from
the fields, loads the dequantised tensors and synthesises every frame.

The coded symbols are bit-exact on every machine.  The synthesised pixels are the output of a
float network: identical to the encoder's own reconstruction on the same device and torch build,
and within rounding (rarely +-1 level) elsewhere.  Frames of :data:`BF16_MIN_PIXELS` and more are
synthesised under bf16 autocast where that is faster (CUDA, CPUs with AVX512-BF16 or AMX: about
twice the frame rate, 0.02 dB lower PSNR, up to a few levels from a float32 decode).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..container import Container
from ..errors import CorruptStreamError, InputError, ModelMismatchError, UsageError
from ..training import bf16_pays, named_preset
from .bitstream import (MIN_BITS, QuantizedTensor, choose_per_channel, decode_tensors, encode_tensors,
                        quantize_tensor, read_table)
from .fit import embed_frames, finetune, fit, prune_masks
from .io import MAX_BYTES, MAX_FRAMES, MAX_SIDE, Video, check_fps
from .models import (ARCHS, MAX_FC_DIM, OPTIONS, STRIDE_CHOICES, Decoder, INRConfig, options_error, parse_size,
                     solve_config)

EMBEDDINGS = "embeddings"
NERV_STEM = "stem.weight"   # 12-30 % of NeRV's values; quantised with one bit fewer than --bits (measured)
MAX_STORED_PARAMS = 200_000_000
BF16_MIN_PIXELS = 300_000   # frames from this size on are synthesised in bf16 where bf16 is faster


@dataclass(frozen=True)
class VideoPreset:
    """How long encoding fits: epochs of the main fit (per architecture: a NeRV epoch costs about
    0.6 of an HNeRV epoch of the same size, so NeRV gets more of them in the same time) and of the
    quantisation-aware fine-tune."""

    nerv_epochs: int
    hnerv_epochs: int
    qat_epochs: int

    def epochs(self, arch: str) -> int:
        return self.nerv_epochs if arch == "nerv" else self.hnerv_epochs


PRESETS = {
    "fast": VideoPreset(nerv_epochs=160, hnerv_epochs=100, qat_epochs=10),
    "medium": VideoPreset(nerv_epochs=500, hnerv_epochs=300, qat_epochs=20),
    "slow": VideoPreset(nerv_epochs=2500, hnerv_epochs=1500, qat_epochs=100),
}
DEFAULT_PRESET = "fast"
QUALITY_RANGE = (1.0, 6.0)
DEFAULT_QUALITY = 3.0
PARAMS_PER_PIXEL = 0.01     # stored values per pixel of the clip at quality 1; doubling with every quality step
DEFAULTS = {"size": None, "preset": None, "epochs": None, "qat_epochs": None, "seed": 0, "lr": 3e-3,
            "batch_size": 2, "bits": 6, "embed_bits": 6, "prune": 0.0, "prune_epochs": 0, "checkpoint": None,
            "progress": True, "time_knots": 0, "local_knots": 0, "affine_knots": 0,
            "residual": 0}


def quality_params(quality: float, frames: int, height: int, width: int) -> int:
    """The stored values (network and embeddings) ``quality`` asks for on a clip of this size."""
    lo, hi = QUALITY_RANGE
    if not lo <= quality <= hi:
        raise UsageError(f"video quality must be between {lo:g} and {hi:g}")
    return int(round(PARAMS_PER_PIXEL * 2 ** (quality - 1) * frames * height * width))


def _settings(arch: str, options: dict, quality: float | None, shape: tuple[int, int, int]) -> dict:
    """Every fitting setting of ``arch``: the options given, the rest from the preset, the model
    size from ``quality`` (or ``size``, not both), the remaining defaults from :data:`DEFAULTS`."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise UsageError(f"video codecs do not take {', '.join(sorted(unknown))}")
    s = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    preset = named_preset(s["preset"] or DEFAULT_PRESET, PRESETS)
    if s["epochs"] is None:
        s["epochs"] = preset.epochs(arch)
    if s["qat_epochs"] is None:
        s["qat_epochs"] = preset.qat_epochs
    if s["size"] is not None and quality is not None:
        raise UsageError("give a video codec --quality or --size (model parameters), not both")
    if s["size"] is not None:
        s["params"] = parse_size(s["size"])
    else:
        try:
            quality = DEFAULT_QUALITY if quality is None else float(quality)
        except (TypeError, ValueError):
            raise UsageError(f"video quality must be a number, not {quality!r}") from None
        s["params"] = min(quality_params(quality, *shape), MAX_STORED_PARAMS)
    if s["params"] > MAX_STORED_PARAMS:
        raise UsageError(f"model size {s['params']} is above the {MAX_STORED_PARAMS} values a video stream may hold")
    for key, lo, hi in (("epochs", 1, 1_000_000), ("bits", 2, 16), ("embed_bits", 2, 16), ("batch_size", 1, 4096),
                        ("prune_epochs", 0, 1_000_000), ("qat_epochs", 0, 1_000_000)):
        if not isinstance(s[key], int) or not lo <= s[key] <= hi:
            raise UsageError(f"{key.replace('_', '-')} must be an integer in {lo}..{hi}")
    if not 0 <= s["prune"] < 1:
        raise UsageError("prune must be a fraction in [0, 1)")
    if not 0 < s["lr"] < 1:
        raise UsageError("lr must be in (0, 1)")
    error = options_error(arch, {k: s[k] for k in OPTIONS})
    if error:
        raise UsageError(error)
    return s


@torch.no_grad()
def synthesize(decoder: Decoder, embeddings: torch.Tensor | None, height: int, width: int, bf16: bool = False,
               batch: int = 4) -> np.ndarray:
    """Every frame of the representation as T x height x width x 3 uint8 (under bf16 autocast if ``bf16``)."""
    cfg = decoder.cfg
    device = next(decoder.parameters()).device
    out = np.empty((cfg.frames, height, width, 3), dtype=np.uint8)
    for start in range(0, cfg.frames, batch):
        idx = torch.arange(start, min(start + batch, cfg.frames), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            x = decoder(idx, embeddings[idx] if embeddings is not None else None)[:, :, :height, :width].float()
        pixels = x.clamp_(0, 1).mul_(255).round_().permute(0, 2, 3, 1)      # in place: no copies of 480p frames
        torch.from_numpy(out[start:start + len(idx)]).copy_(pixels)
    return out


def _as_video(data) -> Video:
    if isinstance(data, Video):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        return Video(np.asarray(data[0]), check_fps(data[1]))
    raise UsageError("video codecs encode a Video or a (frames T x H x W x 3 uint8, fps) tuple")


def _check_config(c: Container) -> tuple[INRConfig, int, int]:
    """The architecture and output size a container declares, refused when implausible."""
    names = ("frames", "height", "width", "fc_dim", "embed_dim", "ks_min", "ks_max", "reduce_permille",
             "lower_width", "pe_levels", "pe_base_permille")
    values = {k: c.require(k) for k in names}
    values.update({k: c.require(k) for k in OPTIONS if k in c.fields})
    strides = c.require("strides", list)
    h, w = c.require("h"), c.require("w")
    ok = (1 <= values["frames"] <= MAX_FRAMES and 1 <= len(strides) <= 6
          and all(s in STRIDE_CHOICES for s in strides) and 1 <= values["fc_dim"] <= MAX_FC_DIM
          and 1 <= values["embed_dim"] <= 256 and 1 <= values["ks_min"] <= values["ks_max"] <= 9
          and 1000 <= values["reduce_permille"] <= 4000 and 1 <= values["lower_width"] <= MAX_FC_DIM
          and 1 <= values["pe_levels"] <= 256 and 1000 <= values["pe_base_permille"] <= 4000
          and options_error(c.model, {k: values[k] for k in OPTIONS if k in values}) is None)
    if ok:
        s = int(np.prod(strides))
        ok = (values["height"] % s == 0 and values["width"] % s == 0 and 0 < values["height"] <= 2 * MAX_SIDE
              and 0 < values["width"] <= 2 * MAX_SIDE and 0 < h <= min(values["height"], MAX_SIDE)
              and 0 < w <= min(values["width"], MAX_SIDE) and values["frames"] * h * w * 3 <= MAX_BYTES)
    if not ok or c.model not in ARCHS:
        raise CorruptStreamError("ncodec video stream declares an invalid network or frame size")
    cfg = INRConfig(arch=c.model, strides=tuple(strides), **values)
    if cfg.digest() != c.weights_digest:
        raise CorruptStreamError("ncodec video stream's architecture digest does not match its fields")
    if cfg.stored_params() > MAX_STORED_PARAMS:
        raise CorruptStreamError("ncodec video stream declares an implausibly large network")
    return cfg, h, w


@dataclass(frozen=True, eq=False)
class Encoding:
    """What :meth:`VideoCodec.encode_and_reconstruct` returns."""

    data: bytes                  # the container bytes, as :meth:`VideoCodec.encode` returns them
    reconstruction: np.ndarray   # T x H x W x 3 uint8: the frames the stream decodes to on this device
    params: int                  # stored values: decoder parameters and HNeRV's embeddings


class VideoCodec:
    """NeRV or HNeRV: ``encode(video, size=..., epochs=...)`` fits and codes, ``decode`` synthesises.
    The object holds only its name, device and synthesis precision, so one object may code any
    number of clips."""

    modality = "video"

    def __init__(self, name: str, device: str = "cpu", precision: str | None = None):
        """``precision`` of the synthesis: "float32", "bfloat16", or None (bf16 for frames of
        :data:`BF16_MIN_PIXELS` and more where bf16 is faster, else float32)."""
        if name not in ARCHS:
            raise UsageError(f"unknown video codec {name!r}; available: {', '.join(ARCHS)}")
        if device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but no CUDA GPU is available")
        if precision not in (None, "float32", "bfloat16"):
            raise UsageError(f"precision must be float32 or bfloat16, not {precision!r}")
        self.name, self.device, self.precision = name, torch.device(device), precision

    def _bf16(self, height: int, width: int) -> bool:
        """Whether frames of this size are synthesised under bf16 autocast."""
        if self.precision is not None:
            return self.precision == "bfloat16"
        return height * width >= BF16_MIN_PIXELS and bf16_pays(self.device)

    def encode(self, data, quality=None, **options) -> bytes:
        """Fit, compress and code a clip.  ``quality`` (1-6, default 3) sets the model size relative
        to the clip's pixels, the options ``preset`` ("fast", "medium", "slow") the fitting time;
        the other options are those of :data:`DEFAULTS` (``size`` like "0.75M" instead of ``quality``)."""
        return self._fit_and_code(data, quality, options)[0]

    def encode_and_reconstruct(self, data, quality=None, **options) -> Encoding:
        """:meth:`encode`, and the frames the stream decodes to on this device, synthesised from the
        coded tensors (the stream is not read back)."""
        out, cfg, coded = self._fit_and_code(data, quality, options)
        _, h, w = _as_video(data).shape
        return Encoding(out, self._synthesize(cfg, coded, h, w), cfg.stored_params())

    def _fit_and_code(self, data, quality, options: dict) -> tuple[bytes, INRConfig, dict[str, QuantizedTensor]]:
        """The container bytes of a clip, the network's architecture and its coded tensors by name."""
        video = _as_video(data)
        t, h, w = video.shape
        s = _settings(self.name, options, quality, video.shape)
        cfg = solve_config(self.name, s["params"], t, h, w, smallest_if_below=s["size"] is None,
                           **{k: s[k] for k in OPTIONS})
        model, _ = fit(cfg, video.frames, s["epochs"], s["lr"], s["batch_size"], s["seed"], self.device,
                       Path(s["checkpoint"]) if s["checkpoint"] else None, s["progress"])
        embeddings = embed_frames(model, video.frames, self.device)
        decoder = model.decoder
        del model
        if embeddings is not None:
            embeddings = torch.nn.Parameter(embeddings)
        masks = prune_masks(decoder, s["prune"]) if s["prune"] > 0 else None
        if masks:
            with torch.no_grad():
                for n, p in decoder.named_parameters():
                    if n in masks:
                        p.mul_(masks[n])
            if s["prune_epochs"]:
                finetune(decoder, embeddings, video.frames, s["prune_epochs"], s["lr"] / 10, s["seed"], self.device,
                         masks=masks, desc="prune fine-tune", progress=s["progress"])
        tensors = dict(decoder.named_parameters())
        if embeddings is not None:
            tensors[EMBEDDINGS] = embeddings
        bits = {n: s["embed_bits"] if n == EMBEDDINGS else s["bits"] for n in tensors}
        if cfg.arch == "nerv":
            bits[NERV_STEM] = max(s["bits"] - 1, MIN_BITS)
        quant = {n: (bits[n], choose_per_channel(x, bits[n])) for n, x in tensors.items()}
        if s["qat_epochs"]:
            finetune(decoder, embeddings, video.frames, s["qat_epochs"], s["lr"] / 10, s["seed"] + 1, self.device,
                     masks=masks, quant=quant, desc="quantisation-aware fine-tune", progress=s["progress"])
        coded = {n: quantize_tensor(x, *quant[n]) for n, x in tensors.items()}
        meta, symbols = encode_tensors(list(coded.values()))
        fields = {**cfg.to_fields(), "h": h, "w": w, "fps_num": video.fps.numerator, "fps_den": video.fps.denominator,
                  "epochs": s["epochs"], "seed": s["seed"], "bits": s["bits"], "embed_bits": s["embed_bits"],
                  "prune_permille": int(round(1000 * s["prune"])), "qat_epochs": s["qat_epochs"],
                  "params": cfg.stored_params()}
        del fields["arch"]
        out = Container("video", self.name, cfg.digest(), fields, {"meta": meta, "symbols": symbols}).to_bytes()
        return out, cfg, coded

    def _synthesize(self, cfg: INRConfig, coded: dict[str, QuantizedTensor], h: int, w: int) -> np.ndarray:
        decoder = Decoder(cfg).to(self.device, memory_format=torch.channels_last)   # 1.7x faster on a CPU
        decoder.load_state_dict({n: q.dequantize() for n, q in coded.items() if n != EMBEDDINGS})
        embeddings = coded[EMBEDDINGS].dequantize().to(self.device) if EMBEDDINGS in coded else None
        return synthesize(decoder.eval(), embeddings, h, w, self._bf16(h, w))

    def decode(self, data: bytes | Container) -> Video:
        """Container bytes -> the decoded :class:`Video`: the stream's tensors (:func:`read_tensors`)
        through :meth:`synthesize_clip`."""
        c = data if isinstance(data, Container) else Container.from_bytes(data)
        if c.codec != "video":
            raise ModelMismatchError(f"this is a {c.codec} stream, not a video stream")
        if c.model != self.name:
            raise ModelMismatchError(f"stream was made with video codec {c.model!r}, not {self.name!r}")
        return self.synthesize_clip(c, read_tensors(c))

    def synthesize_clip(self, c: Container, coded: dict[str, QuantizedTensor]) -> Video:
        """The clip of video stream ``c`` from its tensors as :func:`read_tensors` decodes them."""
        cfg, h, w = _check_config(c)
        fps = Fraction(c.require("fps_num"), max(1, c.require("fps_den")))
        frames = self._synthesize(cfg, coded, h, w)
        try:
            return Video(frames, check_fps(fps))
        except InputError:
            raise CorruptStreamError("ncodec video stream declares an invalid frame rate") from None


def stored_tensors(cfg: INRConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the stored tensors in stream order: decoder parameters, then HNeRV's embeddings."""
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in Decoder(cfg).named_parameters()}
    if cfg.arch == "hnerv":
        shapes[EMBEDDINGS] = (cfg.frames, cfg.embed_dim, *cfg.grid)
    return shapes


def read_tensors(c: Container, symbols: bool = True) -> dict[str, QuantizedTensor]:
    """The quantised tensors of a video stream by name (``symbols=False``: the table only)."""
    cfg, _, _ = _check_config(c)
    shapes = stored_tensors(cfg)
    if symbols:
        coded = decode_tensors(c.section("meta"), c.section("symbols"), list(shapes.values()))
    else:
        coded = read_table(c.section("meta"), list(shapes.values()))
    return dict(zip(shapes, coded))
