"""Coding the representation: quantise every stored tensor, fit it an entropy model, range-code it.

Quantiser
    Symmetric uniform: ``symbol = round(x / step)`` clipped to ``+-(2**(bits-1) - 1)``, with one
    step per tensor or one per output channel (``step = max|x| / qmax``, stored as float16).  The
    choice is made per tensor by the high-rate rate-distortion rule: the scaling whose
    ``bits + n/2 * log2(squared error)`` is smaller wins (halving the error is worth half a bit
    per value), so per-channel steps are used only where they buy more accuracy than they cost.

Entropy model (one per tensor, header data; the cheapest of three, by exact cost)
    * uniform over ``-qmax .. qmax`` (no parameters; for tiny tensors such as biases);
    * a two-sided histogram on half-octave bins of ``|symbol|`` (0, 1, 2, 3, 4-5, 6-7, 8-11, ...),
      each bin's density one byte (a 4-bit-mantissa mini-float), uniform inside a bin;
    * per output channel, one row of a fixed family of discretised Laplace and Gaussian shapes on an
      integer scale grid (one byte per channel), which follows channels of very different spread.
    Every probability comes from integer weights divided once by their integer sum, so every
    machine derives bit-identical tables from the header: decoding the symbols is exact by
    construction.

Layout of the ``meta`` section, per tensor in the decoder's fixed order::

    flags   1 byte  bits (low 5 bits) | per-channel step (0x20) | model << 6
    steps   2 bytes each (float16), 1 or shape[0] of them
    params  histogram: one byte per bin; per-channel family: one row byte per channel

The ``symbols`` section is one constriction range-coder stream holding every tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..entropy import EntropyCodingError, SymbolDecoder, SymbolEncoder
from ..entropy.tables import TableSet, stack_rows
from ..errors import CorruptStreamError

MIN_BITS, MAX_BITS = 2, 16
_PER_CHANNEL, _BITS_MASK, _MODEL_SHIFT = 0x20, 0x1F, 6
_DENSITY_TOP = 1 << 18          # largest bin density after normalisation (fits the mini-float)
_MIN_STEP = 2.0 ** -24          # smallest float16 step


def qmax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def _steps(x: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """float16-representable steps (as float32), one per tensor or per output channel."""
    flat = x.detach().reshape(x.shape[0], -1) if per_channel else x.detach().reshape(1, -1)
    peak = flat.abs().amax(dim=1).float()
    step = torch.where(peak > 0, peak / qmax(bits), torch.ones_like(peak))
    return step.clamp(_MIN_STEP, 65504).half().float()


def _broadcast(step: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return step.view(-1, *([1] * (x.dim() - 1))) if step.numel() > 1 else step.view(())


def quantize(x: torch.Tensor, bits: int, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer symbols, float16-exact steps) of a tensor."""
    step = _steps(x, bits, per_channel).to(x.device)
    q = torch.round(x.detach().float() / _broadcast(step, x)).clamp(-qmax(bits), qmax(bits))
    return q.long(), step


def fake_quantize(x: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """Quantise-dequantise with a straight-through gradient (quantisation-aware fine-tuning)."""
    q, step = quantize(x, bits, per_channel)
    return x + (q.float() * _broadcast(step, x) - x).detach()


@dataclass
class QuantizedTensor:
    """One stored tensor as the stream holds it."""

    shape: tuple[int, ...]
    bits: int
    steps: np.ndarray            # float32 holding float16 values; 1 or shape[0] entries
    symbols: np.ndarray          # int64, ``shape``
    model: int = 0               # UNIFORM, HISTOGRAM or CHANNEL_FAMILY
    params: np.ndarray | None = None   # uint8: histogram densities, or one family row per channel

    def dequantize(self) -> torch.Tensor:
        step = torch.from_numpy(self.steps.astype(np.float32))
        x = torch.from_numpy(self.symbols.astype(np.float32))
        return x * _broadcast(step, x)


# ---- the per-tensor entropy models -----------------------------------------------------------------
# Every probability below comes from integers (Python ints, exact) divided once by their integer
# sum, so encoder and decoder build identical tables on any machine.

UNIFORM, HISTOGRAM, CHANNEL_FAMILY = 0, 1, 2
MODEL_NAMES = {UNIFORM: "uniform", HISTOGRAM: "histogram", CHANNEL_FAMILY: "per-channel Laplace/Gaussian"}
MAX_FAMILY_BITS = 10


def bin_edges(bits: int) -> np.ndarray:
    """Lower edges of the half-octave bins of |symbol|: 0, 1, 2, 3, 4, 6, 8, 12, ... up to qmax + 1."""
    edges, e = [0, 1, 2, 3], 4
    while e <= qmax(bits):
        edges += [e, e + e // 2]
        e *= 2
    edges = [v for v in edges if v <= qmax(bits)]
    return np.array(edges + [qmax(bits) + 1], dtype=np.int64)


def _n_bins(bits: int) -> int:
    return 2 * len(bin_edges(bits)) - 3


def _bin_index(symbols: np.ndarray, bits: int) -> np.ndarray:
    """Bin of each symbol: 0 .. nb-1 for symbol >= 0, nb .. 2nb-2 for negative symbols."""
    edges = bin_edges(bits)
    nb = len(edges) - 1
    b = np.searchsorted(edges, np.abs(symbols), side="right") - 1
    return np.where(symbols < 0, nb + b - 1, b)


def _minifloat(code: np.ndarray) -> np.ndarray:
    """uint8 code -> integer: c below 16, else (16 + c mod 16) << (c // 16 - 1)."""
    c = code.astype(np.int64)
    return np.where(c < 16, c, (16 + c % 16) << np.maximum(c // 16 - 1, 0))


_MINIFLOAT_VALUES = _minifloat(np.arange(256))


def _to_minifloat(values: np.ndarray) -> np.ndarray:
    """Nearest (in log scale) mini-float code of non-negative reals (0 only for 0)."""
    v = np.maximum(np.asarray(values, dtype=np.float64), 1e-12)
    hi = np.clip(np.searchsorted(_MINIFLOAT_VALUES, v), 1, 255)
    lo = np.maximum(hi - 1, 1)
    pick_hi = np.log(_MINIFLOAT_VALUES[hi] / v) < np.log(v / _MINIFLOAT_VALUES[lo])
    return np.where(np.asarray(values) <= 0, 0, np.where(pick_hi, hi, lo)).astype(np.uint8)


def fit_bins(symbols: np.ndarray, bits: int) -> np.ndarray:
    """Encoder side: the histogram densities (count / bin width, scaled, as mini-float codes)."""
    widths = np.diff(bin_edges(bits))
    widths = np.concatenate([widths, widths[1:]])
    counts = np.bincount(_bin_index(symbols.ravel(), bits), minlength=len(widths))
    density = counts / widths
    return _to_minifloat(density * (_DENSITY_TOP / density.max()))


def _row(weights) -> np.ndarray:
    """Integer weights of symbols -qmax..qmax -> probabilities with the escape entry (weight 1) last."""
    w = np.asarray(weights, dtype=np.int64)
    return np.append(w, 1) / (int(w.sum()) + 1)


def histogram_row(bits: int, bins: np.ndarray | None) -> np.ndarray:
    """The histogram model (or the uniform one for ``bins=None``) as a probability row."""
    k = np.arange(-qmax(bits), qmax(bits) + 1)
    if bins is None:
        return _row(np.ones(len(k), dtype=np.int64))
    return _row(2 * _minifloat(bins)[_bin_index(k, bits)] + 1)


def _family_scales(bits: int) -> list[int]:
    """Integer scale grid 1, 2, 3, ... growing by a quarter per step, up to about 2 qmax."""
    m, out = 1, []
    while m <= 2 * qmax(bits) + 2:
        out.append(m)
        m += max(1, m // 4)
    return out


@lru_cache(maxsize=None)
def family_rows(bits: int) -> np.ndarray:
    """Rows of discretised Laplace (ratio 1 - 1/m) then Gaussian (ratio 1 - 1/(2 m^2) per k^2)
    shapes for every grid scale m, from exact integer recurrences in Q32."""
    one, n = 1 << 32, qmax(bits)
    rows = []
    for gaussian in (False, True):
        for m in _family_scales(bits):
            theta = one - one // (2 * m * m if gaussian else m)
            w, step, half = 1 << 40, theta, [1 << 40]
            for _ in range(n):
                w = (w * step) >> 32
                half.append(w + 1)
                if gaussian:
                    step = (step * theta * theta) >> 64   # theta^(2k+1) for the next k
            rows.append(_row(half[:0:-1] + half))
    return np.stack(rows)


def _family_costs(symbols: np.ndarray, bits: int) -> np.ndarray:
    """Bits of every channel (rows of ``symbols`` reshaped to channels) under every family row."""
    n = qmax(bits)
    per_channel = symbols.reshape(symbols.shape[0], -1)
    counts = np.zeros((per_channel.shape[0], 2 * n + 1), dtype=np.float64)
    np.add.at(counts, (np.arange(per_channel.shape[0])[:, None], per_channel + n), 1)
    return counts @ -np.log2(family_rows(bits)[:, :-1]).T


def choose_model(symbols: np.ndarray, bits: int) -> tuple[int, np.ndarray | None, float]:
    """(model, params, cost in bits including the params) of the cheapest model for these symbols."""
    bins = fit_bins(symbols, bits)
    options = [(UNIFORM, None, symbols.size * math.log2(2 * qmax(bits) + 1)),
               (HISTOGRAM, bins, _ideal(symbols, histogram_row(bits, bins), bits) + 8 * len(bins))]
    if bits <= MAX_FAMILY_BITS and symbols.ndim >= 2:
        costs = _family_costs(symbols, bits)
        rows = costs.argmin(axis=1)
        options.append((CHANNEL_FAMILY, rows.astype(np.uint8), float(costs.min(axis=1).sum()) + 8 * len(rows)))
    return min(options, key=lambda o: o[2])


def _ideal(symbols: np.ndarray, row: np.ndarray, bits: int) -> float:
    return float(-np.log2(row[symbols.ravel() + qmax(bits)]).sum())


def choose_per_channel(x: torch.Tensor, bits: int) -> bool:
    """Per-tensor or per-channel steps, by the high-rate rule ``bits + n/2 log2(error)``."""
    if x.dim() < 2 or x.shape[0] == 1:
        return False
    scores = []
    for per_channel in (False, True):
        q, step = quantize(x, bits, per_channel)
        err = float(((q.float() * _broadcast(step, x) - x.detach().float()) ** 2).sum()) + 1e-30
        symbols = q.cpu().numpy()
        cost = choose_model(symbols, bits)[2]
        scores.append(cost + 16 * step.numel() + symbols.size / 2 * math.log2(err))
    return scores[1] < scores[0]


def quantize_tensor(x: torch.Tensor, bits: int, per_channel: bool) -> QuantizedTensor:
    """Quantise one tensor and fit its entropy model."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in {MIN_BITS}..{MAX_BITS}")
    q, step = quantize(x, bits, per_channel)
    symbols = q.cpu().numpy()
    model, params, _ = choose_model(symbols, bits)
    return QuantizedTensor(tuple(x.shape), bits, step.cpu().numpy(), symbols, model, params)


def _layout(tensors: list[QuantizedTensor]) -> tuple[TableSet, np.ndarray]:
    """The table set of all tensors and the row of every symbol, in stream order."""
    rows, offsets, family_base, index = [], [], {}, []
    for t in tensors:
        if t.model == CHANNEL_FAMILY:
            if t.bits not in family_base:
                family_base[t.bits] = len(rows)
                rows += list(family_rows(t.bits))
                offsets += [-qmax(t.bits)] * len(family_rows(t.bits))
            per_symbol = np.repeat(t.params.astype(np.int64), math.prod(t.shape) // t.shape[0])
            index.append(family_base[t.bits] + per_symbol)
        else:
            rows.append(histogram_row(t.bits, t.params))
            offsets.append(-qmax(t.bits))
            index.append(np.full(math.prod(t.shape), len(rows) - 1, dtype=np.int64))
    return stack_rows(rows, offsets), np.concatenate(index)


# ---- the two sections ------------------------------------------------------------------------------

def encode_tensors(tensors: list[QuantizedTensor]) -> tuple[bytes, bytes]:
    """(meta section, symbols section) of the tensors, in the given order."""
    meta = bytearray()
    for t in tensors:
        meta.append(t.bits | (_PER_CHANNEL if len(t.steps) > 1 else 0) | (t.model << _MODEL_SHIFT))
        meta += t.steps.astype("<f2").tobytes()
        if t.params is not None:
            meta += t.params.astype(np.uint8).tobytes()
    tables, index = _layout(tensors)
    enc = SymbolEncoder()
    enc.encode(np.concatenate([t.symbols.ravel() for t in tensors]), index, tables)
    return bytes(meta), enc.finish()


def read_table(meta: bytes, shapes: list[tuple[int, ...]]) -> list[QuantizedTensor]:
    """The tensor table of a ``meta`` section (bits, steps, models; symbols still empty)."""
    pos, heads = 0, []

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(meta):
            raise CorruptStreamError(f"ncodec video stream is corrupt: tensor table ends inside {what}")
        pos += n
        return meta[pos - n:pos]

    for shape in shapes:
        flags = take(1, "a tensor's flags")[0]
        bits, model = flags & _BITS_MASK, flags >> _MODEL_SHIFT
        if (not MIN_BITS <= bits <= MAX_BITS or model not in MODEL_NAMES or (flags & _PER_CHANNEL and len(shape) < 2)
                or (model == CHANNEL_FAMILY and (len(shape) < 2 or bits > MAX_FAMILY_BITS))):
            raise CorruptStreamError("ncodec video stream is corrupt: invalid tensor flags")
        n_steps = shape[0] if flags & _PER_CHANNEL else 1
        steps = np.frombuffer(take(2 * n_steps, "quantiser steps"), dtype="<f2").astype(np.float32)
        if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
            raise CorruptStreamError("ncodec video stream is corrupt: invalid quantiser step")
        params = None
        if model == HISTOGRAM:
            params = np.frombuffer(take(_n_bins(bits), "a histogram"), dtype=np.uint8).copy()
        elif model == CHANNEL_FAMILY:
            params = np.frombuffer(take(shape[0], "per-channel models"), dtype=np.uint8).copy()
            if params.max(initial=0) >= len(family_rows(bits)):
                raise CorruptStreamError("ncodec video stream is corrupt: invalid per-channel model")
        heads.append(QuantizedTensor(tuple(shape), bits, steps, np.empty(0, np.int64), model, params))
    if pos != len(meta):
        raise CorruptStreamError("ncodec video stream is corrupt: unexpected bytes after the tensor table")
    return heads


def decode_tensors(meta: bytes, data: bytes, shapes: list[tuple[int, ...]]) -> list[QuantizedTensor]:
    """Inverse of :func:`encode_tensors` for tensors of known ``shapes``; CorruptStreamError on damage."""
    heads = read_table(meta, shapes)
    tables, index = _layout(heads)
    try:
        symbols = SymbolDecoder(data).decode(index, tables)
    except EntropyCodingError as exc:
        raise CorruptStreamError(f"ncodec video stream is corrupt: {exc}") from None
    sizes = [math.prod(s) for s in shapes]
    for t, part in zip(heads, np.split(symbols, np.cumsum(sizes)[:-1])):
        if np.abs(part).max(initial=0) > qmax(t.bits):
            raise CorruptStreamError("ncodec video stream is corrupt: symbol outside its quantiser's range")
        t.symbols = part.reshape(t.shape)
    return heads
