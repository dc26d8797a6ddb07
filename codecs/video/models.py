"""NeRV and HNeRV: networks that *are* the video.

Both share one decoder: a stem that turns a per-frame input into a small feature grid
(``fc_dim`` channels of ``grid_h x grid_w``), then one upsampling block per stride
(convolution -> pixel shuffle -> GELU) and a 3x3 head.  As in HNeRV, kernel sizes grow towards
the output (``ks_min + 2 i``, capped at ``ks_max``) while widths shrink by ``reduce`` per stage
(never below ``lower_width``), which spreads the parameters evenly over the stages.

* NeRV: the input is the frame index through a sinusoidal positional encoding; the stem is a
  linear layer to the whole grid.  Nothing per frame is stored.
* HNeRV: the input is a tiny per-frame embedding (``embed_dim x grid``) produced by a
  convolutional encoder from the frame itself; the stem is a 1x1 convolution.  The embeddings are
  stored in the stream, the encoder is not.

Options from the papers that followed, each off by default (see docs/models.md for what they gave):

* ``time_knots`` (NeRV, after HiNeRV's temporal grids): the stem's input is no longer a positional
  encoding through a linear layer but learned feature grids over time, at ``time_knots`` knots and
  every coarser halving down to two, each linearly interpolated at the frame's time and summed.
* ``local_knots`` (HiNeRV's hierarchical encodings): every upsampling block adds a learned
  encoding of the position inside its ``stride x stride`` patch, interpolated over ``local_knots``
  knots in time, before its activation.
* ``affine_knots`` (Boosting-NeRV's temporal affine transform): every upsampling block scales and
  shifts each output channel by a learned, time-dependent amount (interpolated over
  ``affine_knots`` knots) before its activation.
* ``residual`` (NeRV++): every upsampling block is followed by a separable-convolution residual
  block, and gets a bilinear skip from its input (its first channels, upsampled).

:func:`solve_config` picks ``fc_dim`` so that the stored parameters (decoder, plus embeddings
for HNeRV) meet a budget, the role of HNeRV's model-size solver; it searches the exact count
rather than solving an approximate quadratic.  Where HNeRV's shape would cost more than
:data:`MAX_FRAME_MACS` multiply-adds a frame (large frames at higher qualities), the widths shrink
faster from stage to stage, then the kernels stop at 3x3 (:data:`SHAPES`): the same parameters move
towards the small feature maps, and 854x480 decodes at about real time on 2 CPU cores.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError

ARCHS = ("nerv", "hnerv")
OPTIONS = ("time_knots", "local_knots", "affine_knots", "residual")   # INRConfig fields that are off (0) by default
MAX_KNOTS = 4096
STRIDE_CHOICES = (5, 4, 3, 2)
MAX_FC_DIM = 4096
# decoder shapes (width ratio between stages x 1000, largest kernel), tried in order until one fits the budget
SHAPES = ((1200, 5), (1600, 5), (2000, 5), (2000, 3))
MAX_FRAME_MACS = 2_500_000_000   # decoder multiply-adds a frame: 854x480 decodes at 23-32 frames/s on 2 cores (bf16)


@dataclass(frozen=True)
class INRConfig:
    """Everything that builds a decoder; it travels in the container's fields."""

    arch: str
    frames: int
    height: int                 # model output size: the frame padded to a multiple of prod(strides)
    width: int
    strides: tuple[int, ...]
    fc_dim: int
    embed_dim: int = 16         # HNeRV: channels of the per-frame embedding
    ks_min: int = 1
    ks_max: int = 5
    reduce_permille: int = 1200
    lower_width: int = 12
    pe_levels: int = 40         # NeRV: sin/cos pairs of the positional encoding (40 measured against 80 and 20)
    pe_base_permille: int = 1250
    time_knots: int = 0         # options (see the module docstring): 0 is off
    local_knots: int = 0
    affine_knots: int = 0
    residual: int = 0

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    @property
    def grid(self) -> tuple[int, int]:
        return self.height // self.total_stride, self.width // self.total_stride

    def widths(self) -> list[int]:
        """Channel count after the stem and after every block."""
        out, c = [self.fc_dim], self.fc_dim
        for _ in self.strides:
            c = max(round(c * 1000 / self.reduce_permille), self.lower_width)
            out.append(c)
        return out

    def kernel(self, stage: int) -> int:
        return min(self.ks_min + 2 * stage, self.ks_max)

    def time_levels(self) -> list[int]:
        """Knots of each temporal grid (``time_knots`` halved down to two); empty when off."""
        out, k = [], self.time_knots
        while k >= 2:
            out.append(k)
            k //= 2
        return out

    def to_fields(self) -> dict:
        """The config as container fields; options at their default are left out (streams made
        before they existed keep their digest)."""
        d = asdict(self)
        d["strides"] = list(self.strides)
        for name in OPTIONS:
            if not d[name]:
                del d[name]
        return d

    def digest(self) -> bytes:
        """8 bytes identifying the architecture (the container's ``weights_digest``)."""
        return hashlib.sha256(json.dumps(self.to_fields(), sort_keys=True).encode()).digest()[:8]

    def macs_per_frame(self) -> int:
        """Multiply-adds of the decoder for one frame: stem, upsampling blocks (with the residual
        option's blocks) and head; the options' additions and activations left out."""
        gh, gw = self.grid
        widths = self.widths()
        if self.arch == "hnerv":
            total = self.embed_dim * self.fc_dim * gh * gw
        else:
            total = 0 if self.time_knots else 2 * self.pe_levels * self.fc_dim * gh * gw
        h, w = gh, gw
        for i, s in enumerate(self.strides):
            total += widths[i] * widths[i + 1] * s * s * self.kernel(i) ** 2 * h * w
            h, w = h * s, w * s
            if self.residual:
                total += (9 + widths[i + 1]) * widths[i + 1] * h * w
        return total + widths[-1] * 3 * 9 * h * w

    def stored_params(self) -> int:
        """Parameters the stream carries: the decoder, plus the embeddings for HNeRV."""
        with torch.device("meta"):
            n = sum(p.numel() for p in Decoder(self).parameters())
        if self.arch == "hnerv":
            n += self.frames * self.embed_dim * self.grid[0] * self.grid[1]
        return n


def options_error(arch: str, options: dict) -> str | None:
    """Why architecture ``options`` (some of :data:`OPTIONS` by name) are invalid for ``arch``; None
    when they are valid.  The one check behind both a refused encode and a refused stream."""
    for name, value in options.items():
        flag = name.replace("_", "-")
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{flag} must be an integer"
        if name == "residual" and value not in (0, 1):
            return "residual is on (1) or off (0)"
        if name != "residual" and value and not 2 <= value <= MAX_KNOTS:
            return f"{flag} must be 0 (off) or 2..{MAX_KNOTS} knots"
    if options.get("time_knots") and arch != "nerv":
        return "time-knots replaces NeRV's positional encoding; it is an option of nerv only"
    return None


def choose_strides(height: int, width: int) -> tuple[int, ...]:
    """Upsampling strides (largest first, at most 5 stages) for a frame size: a feature grid of
    2-4 cells on the short side (HNeRV uses 2x4 for 640x1280 with strides 5,4,4,2,2), little padding,
    many gentle stages.  Frames too small for that get the stride sequence with the least padding."""
    candidates = []

    def visit(prefix: tuple[int, ...]):
        if prefix:
            s = math.prod(prefix)
            gh, gw = -(-height // s), -(-width // s)
            waste = gh * gw * s * s / (height * width) - 1
            candidates.append((not 2 <= min(gh, gw) <= 4, waste + 0.02 * gh * gw - 0.01 * len(prefix), prefix))
        if len(prefix) < 5:
            for st in STRIDE_CHOICES:
                if (not prefix or st <= prefix[-1]) and math.prod(prefix) * st <= 2 * max(height, width):
                    visit(prefix + (st,))

    visit(())
    return min(candidates)[2]


def solve_config(arch: str, params: int, frames: int, height: int, width: int, smallest_if_below: bool = False,
                 **overrides) -> INRConfig:
    """The config whose stored parameter count is closest to ``params`` (frames are padded to a
    multiple of the total stride).  Budgets too small for the default ``lower_width`` of 12 get
    narrower final stages (8, then 4); below the smallest of those, the smallest config when
    ``smallest_if_below``, else an error.  Unless ``reduce_permille`` or ``ks_max`` is given, the
    first of :data:`SHAPES` whose decoder stays within :data:`MAX_FRAME_MACS` (else the last)."""
    if arch not in ARCHS:
        raise UsageError(f"unknown video architecture {arch!r}; choose {' or '.join(ARCHS)}")
    if "reduce_permille" in overrides or "ks_max" in overrides:
        return _solve_widths(arch, params, frames, height, width, smallest_if_below, **overrides)
    for reduce, kernel in SHAPES:
        cfg = _solve_widths(arch, params, frames, height, width, smallest_if_below, reduce_permille=reduce,
                            ks_max=kernel, **overrides)
        if cfg.macs_per_frame() <= MAX_FRAME_MACS:
            break
    return cfg


def _solve_widths(arch: str, params: int, frames: int, height: int, width: int, smallest_if_below: bool,
                  **overrides) -> INRConfig:
    """:func:`solve_config` for one set of shape settings: the ``fc_dim`` that meets ``params``."""
    strides = tuple(overrides.pop("strides", None) or choose_strides(height, width))
    s = math.prod(strides)
    base = dict(arch=arch, frames=frames, height=-(-height // s) * s, width=-(-width // s) * s, strides=strides)
    base.update(overrides)
    widths = [base.pop("lower_width")] if "lower_width" in base else [12, 8, 4]
    for lower in widths:
        base["lower_width"] = lower
        smallest = INRConfig(fc_dim=lower, **base).stored_params()
        if smallest <= params:
            break
    else:
        if not smallest_if_below:
            raise UsageError(f"model size {params} is below the smallest {arch} for this clip ({smallest} parameters)")
        return INRConfig(fc_dim=base["lower_width"], **base)
    lo, hi = lower, MAX_FC_DIM
    while lo < hi:                      # largest fc_dim whose count stays within the budget
        mid = (lo + hi + 1) // 2
        if INRConfig(fc_dim=mid, **base).stored_params() <= params:
            lo = mid
        else:
            hi = mid - 1
    below, above = INRConfig(fc_dim=lo, **base), INRConfig(fc_dim=min(lo + 1, MAX_FC_DIM), **base)
    return min((below, above), key=lambda c: abs(c.stored_params() - params))


def parse_size(text) -> int:
    """'0.75M' / '300k' / '120000' -> a parameter count."""
    t = str(text).strip().lower()
    scale = {"k": 1e3, "m": 1e6}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale != 1 else t) * scale
    except ValueError:
        raise UsageError(f"model size must look like 0.75M, 300k or 120000, not {text!r}") from None
    if not 1000 <= value <= 1e9:
        raise UsageError(f"model size {text!r} is outside 1k..1000M parameters")
    return int(round(value))


def positional_encoding(t: torch.Tensor, cfg: INRConfig) -> torch.Tensor:
    """Frame positions t in [0, 1) -> (B, 2 * pe_levels) sin/cos features (NeRV)."""
    bases = (cfg.pe_base_permille / 1000) ** torch.arange(cfg.pe_levels, dtype=torch.float32, device=t.device)
    v = t.float()[:, None] * bases[None, :] * math.pi
    return torch.cat([torch.sin(v), torch.cos(v)], dim=1)


def interpolate_time(grid: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rows of ``grid`` (knots x ...) linearly interpolated at times ``t`` in [0, 1]: (B, ...)."""
    pos = t.float().clamp(0, 1) * (grid.shape[0] - 1)
    lo = pos.floor().long().clamp(max=grid.shape[0] - 2)
    frac = (pos - lo).view(-1, *[1] * (grid.dim() - 1)).to(grid.dtype)
    return grid[lo] * (1 - frac) + grid[lo + 1] * frac


class UpBlock(nn.Module):
    """Convolution to ``c_out * stride**2`` channels, pixel shuffle by ``stride``, GELU; with the
    options, a local encoding and a temporal affine transform before the GELU, a bilinear skip and
    a residual block after."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, local_knots: int = 0, affine_knots: int = 0,
                 residual: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, kernel, padding=kernel // 2)
        self.stride, self.c_out = stride, c_out
        self.local = nn.Parameter(torch.zeros(local_knots, c_out, stride, stride)) if local_knots else None
        self.affine = nn.Parameter(torch.zeros(affine_knots, 2, c_out)) if affine_knots else None
        self.residual = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, groups=c_out), nn.Conv2d(c_out, c_out, 1),
                                      nn.GELU()) if residual else None

    def forward(self, x, t: torch.Tensor):
        """``t``: the frames' times in [0, 1] (read by the local encodings and the affine transform)."""
        y = self.conv(x)
        if self.local is not None:        # a per-channel bias before the shuffle: tiled over the patches after it
            y = y + interpolate_time(self.local, t).reshape(len(t), -1, 1, 1)
        y = F.pixel_shuffle(y, self.stride)
        if self.affine is not None:
            scale, shift = interpolate_time(self.affine, t)[:, :, :, None, None].unbind(1)
            y = y * (1 + scale) + shift
        y = F.gelu(y)
        if self.residual is not None:
            skip = x[:, :self.c_out]           # widths never grow from block to block
            y = y + F.interpolate(skip, scale_factor=self.stride, mode="bilinear", align_corners=False)
            y = y + self.residual(y)
        return y


class Decoder(nn.Module):
    """Stem + upsampling blocks + head: per-frame input -> RGB in [0, 1]."""

    def __init__(self, cfg: INRConfig):
        super().__init__()
        self.cfg = cfg
        gh, gw = cfg.grid
        widths = cfg.widths()
        if cfg.arch == "hnerv":
            self.stem = nn.Conv2d(cfg.embed_dim, cfg.fc_dim, 1)
        elif cfg.time_knots:
            self.time_grids = nn.ParameterList(nn.Parameter(torch.randn(k, cfg.fc_dim, gh, gw) * 0.1)
                                               for k in cfg.time_levels())
        else:
            self.stem = nn.Linear(2 * cfg.pe_levels, cfg.fc_dim * gh * gw)
        self.blocks = nn.ModuleList(
            UpBlock(widths[i], widths[i + 1], s, cfg.kernel(i), cfg.local_knots, cfg.affine_knots, cfg.residual)
            for i, s in enumerate(cfg.strides))
        self.head = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, index: torch.Tensor, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Frames ``index`` (B,); HNeRV: their embeddings (B, embed_dim, grid_h, grid_w)."""
        cfg = self.cfg
        t = index.float() / max(cfg.frames - 1, 1)
        if cfg.arch == "hnerv":
            x = F.gelu(self.stem(embeddings))
        elif cfg.time_knots:
            x = F.gelu(sum(interpolate_time(g, t) for g in self.time_grids))
        else:
            x = F.gelu(self.stem(positional_encoding(index.float() / cfg.frames, cfg))).view(-1, cfg.fc_dim, *cfg.grid)
        for block in self.blocks:
            x = block(x, t)
        return torch.tanh(self.head(x)) * 0.5 + 0.5


class FrameEncoder(nn.Module):
    """HNeRV's content encoder (never stored): per stride a patchifying convolution, and from the
    third stage on (where the maps are small) a depthwise/pointwise residual block; the last stage
    outputs the embedding, linearly."""

    def __init__(self, cfg: INRConfig, width: int = 48):
        super().__init__()
        chans = [3] + [width] * (len(cfg.strides) - 1) + [cfg.embed_dim]
        self.down = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], s, stride=s)
                                  for i, s in enumerate(reversed(cfg.strides)))
        self.mix = nn.ModuleList(nn.Identity() if i < 2 else
                                 nn.Sequential(nn.Conv2d(width, width, 7, padding=3, groups=width),
                                               nn.Conv2d(width, 2 * width, 1), nn.GELU(),
                                               nn.Conv2d(2 * width, width, 1))
                                 for i in range(len(cfg.strides) - 1))

    def forward(self, x):
        for i, down in enumerate(self.down):
            x = down(x)
            if i < len(self.mix):
                x = F.gelu(x)
                if i >= 2:
                    x = x + self.mix[i](x)
        return x


class VideoINR(nn.Module):
    """The trainable whole: decoder (stored) and, for HNeRV, the encoder (not stored)."""

    def __init__(self, cfg: INRConfig):
        super().__init__()
        self.cfg = cfg
        self.decoder = Decoder(cfg)
        self.encoder = FrameEncoder(cfg) if cfg.arch == "hnerv" else None

    def forward(self, frames: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        """Frames ``index``; HNeRV's encoder reads ``frames`` (the same frames, as floats)."""
        return self.decoder(index, self.encoder(frames) if self.encoder is not None else None)
