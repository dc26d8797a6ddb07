"""Coding the representation: quantise every stored tensor, fit it an entropy model, range-code it.

Quantiser
    Symmetric uniform: ``symbol = round(x / step)`` clipped to ``+-(2**(bits-1) - 1)``, with one
    step per tensor or one per output channel (``step = max|x| / qmax``, stored as float16).  The
    choice is made per tensor by the high-rate rate-distortion rule: the scaling whose
    ``bits + n/2 * log2(squared error)`` is smaller wins (halving the error is worth half a bit
    per value), so per-channel steps are used only where they buy more accuracy than they cost.

Entropy model (one per tensor, header data)
    A two-sided histogram on half-octave bins of ``|symbol|`` (0, 1, 2, 3, 4-5, 6-7, 8-11, ...),
    each bin's density stored as one byte (a 4-bit-mantissa mini-float), uniform inside a bin.
    Probabilities are integer weights divided once by their integer sum, so every machine derives
    bit-identical tables from the header: decoding the symbols is exact by construction.  Tensors
    too small to pay for their histogram use a uniform model instead (chosen by exact cost).

Layout of the ``meta`` section, per tensor in the decoder's fixed order::

    flags  1 byte  bits (low 5 bits) | per-channel (0x20) | histogram (0x40)
    steps  2 bytes each (float16), 1 or shape[0] of them
    bins   1 byte each, only with a histogram

The ``symbols`` section is one constriction range-coder stream holding every tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..entropy import EntropyCodingError, SymbolDecoder, SymbolEncoder
from ..entropy.tables import TableSet, stack_rows
from ..errors import CorruptStreamError

MIN_BITS, MAX_BITS = 2, 16
_PER_CHANNEL, _HISTOGRAM, _BITS_MASK = 0x20, 0x40, 0x1F
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
    bins: np.ndarray | None      # uint8 histogram densities, or None for the uniform model

    def dequantize(self) -> torch.Tensor:
        step = torch.from_numpy(self.steps.astype(np.float32))
        x = torch.from_numpy(self.symbols.astype(np.float32))
        return x * _broadcast(step, x)


# ---- the per-tensor entropy model ------------------------------------------------------------------

def bin_edges(bits: int) -> np.ndarray:
    """Lower edges of the half-octave bins of |symbol|: 0, 1, 2, 3, 4, 6, 8, 12, ... up to qmax + 1."""
    edges, e = [0, 1, 2, 3], 4
    while e <= qmax(bits):
        edges += [e, e + e // 2]
        e *= 2
    edges = [v for v in edges if v <= qmax(bits)]
    return np.array(edges + [qmax(bits) + 1], dtype=np.int64)


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
    """Nearest (in log scale) mini-float code of non-negative reals."""
    v = np.asarray(values, dtype=np.float64)
    hi = np.clip(np.searchsorted(_MINIFLOAT_VALUES, v), 1, 255)
    lo = hi - 1
    pick_hi = np.log(np.maximum(_MINIFLOAT_VALUES[hi], 1) / np.maximum(v, 1e-12)) < \
        np.log(np.maximum(v, 1e-12) / np.maximum(_MINIFLOAT_VALUES[lo], 1e-12))
    code = np.where(pick_hi, hi, lo)
    return np.where(v <= 0, 0, np.maximum(code, 1)).astype(np.uint8)


def fit_bins(symbols: np.ndarray, bits: int) -> np.ndarray:
    """Encoder side: the histogram densities (count / bin width, scaled, as mini-float codes)."""
    edges = bin_edges(bits)
    widths = np.diff(edges)
    widths = np.concatenate([widths, widths[1:]])
    counts = np.bincount(_bin_index(symbols.ravel(), bits), minlength=len(widths))
    density = counts / widths
    return _to_minifloat(density * (_DENSITY_TOP / density.max()))


def model_row(bits: int, bins: np.ndarray | None) -> np.ndarray:
    """Probabilities of symbols -qmax .. qmax plus the escape entry, from integers only."""
    k = np.arange(-qmax(bits), qmax(bits) + 1)
    if bins is None:
        weights = np.ones(len(k), dtype=np.int64)
    else:
        weights = 2 * _minifloat(bins)[_bin_index(k, bits)] + 1
    total = int(weights.sum()) + 1
    return np.append(weights, 1) / total


def _tables(tensors: list[QuantizedTensor]) -> TableSet:
    return stack_rows([model_row(t.bits, t.bins) for t in tensors], [-qmax(t.bits) for t in tensors])


def ideal_bits(symbols: np.ndarray, bits: int, bins: np.ndarray | None) -> float:
    row = model_row(bits, bins)
    return float(-np.log2(row[symbols.ravel() + qmax(bits)]).sum())


def choose_model(symbols: np.ndarray, bits: int) -> tuple[np.ndarray | None, float]:
    """The cheaper of histogram and uniform model for these symbols, with its cost in bits
    (the histogram's own bytes included)."""
    bins = fit_bins(symbols, bits)
    hist_cost = ideal_bits(symbols, bits, bins) + 8 * len(bins)
    flat_cost = symbols.size * math.log2(2 * qmax(bits) + 1)
    return (bins, hist_cost) if hist_cost < flat_cost else (None, flat_cost)


def choose_per_channel(x: torch.Tensor, bits: int) -> bool:
    """Per-tensor or per-channel steps, by the high-rate rule ``bits + n/2 log2(error)``."""
    if x.dim() < 2 or x.shape[0] == 1:
        return False
    scores = []
    for per_channel in (False, True):
        q, step = quantize(x, bits, per_channel)
        err = float(((q.float() * _broadcast(step, x) - x.detach().float()) ** 2).sum()) + 1e-30
        symbols = q.cpu().numpy()
        _, cost = choose_model(symbols, bits)
        scores.append(cost + 16 * step.numel() + symbols.size / 2 * math.log2(err))
    return scores[1] < scores[0]


def quantize_tensor(x: torch.Tensor, bits: int, per_channel: bool) -> QuantizedTensor:
    """Quantise one tensor and fit its entropy model."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in {MIN_BITS}..{MAX_BITS}")
    q, step = quantize(x, bits, per_channel)
    symbols = q.cpu().numpy()
    bins, _ = choose_model(symbols, bits)
    return QuantizedTensor(tuple(x.shape), bits, step.cpu().numpy(), symbols, bins)


# ---- the two sections ------------------------------------------------------------------------------

def encode_tensors(tensors: list[QuantizedTensor]) -> tuple[bytes, bytes]:
    """(meta section, symbols section) of the tensors, in the given order."""
    meta = bytearray()
    for t in tensors:
        flags = t.bits | (_PER_CHANNEL if len(t.steps) > 1 else 0) | (_HISTOGRAM if t.bins is not None else 0)
        meta.append(flags)
        meta += t.steps.astype("<f2").tobytes()
        if t.bins is not None:
            meta += t.bins.astype(np.uint8).tobytes()
    index = np.concatenate([np.full(t.symbols.size, i, dtype=np.int64) for i, t in enumerate(tensors)])
    symbols = np.concatenate([t.symbols.ravel() for t in tensors])
    enc = SymbolEncoder()
    enc.encode(symbols, index, _tables(tensors))
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
        bits = flags & _BITS_MASK
        if not MIN_BITS <= bits <= MAX_BITS or flags & 0x80 or (flags & _PER_CHANNEL and len(shape) < 2):
            raise CorruptStreamError("ncodec video stream is corrupt: invalid tensor flags")
        n_steps = shape[0] if flags & _PER_CHANNEL else 1
        steps = np.frombuffer(take(2 * n_steps, "quantiser steps"), dtype="<f2").astype(np.float32)
        if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
            raise CorruptStreamError("ncodec video stream is corrupt: invalid quantiser step")
        bins = None
        if flags & _HISTOGRAM:
            bins = np.frombuffer(take(2 * len(bin_edges(bits)) - 3, "a histogram"), dtype=np.uint8).copy()
        heads.append(QuantizedTensor(tuple(shape), bits, steps, np.empty(0, np.int64), bins))
    if pos != len(meta):
        raise CorruptStreamError("ncodec video stream is corrupt: unexpected bytes after the tensor table")
    return heads


def decode_tensors(meta: bytes, data: bytes, shapes: list[tuple[int, ...]]) -> list[QuantizedTensor]:
    """Inverse of :func:`encode_tensors` for tensors of known ``shapes``; CorruptStreamError on damage."""
    heads = read_table(meta, shapes)
    sizes = [math.prod(s) for s in shapes]
    index = np.concatenate([np.full(n, i, dtype=np.int64) for i, n in enumerate(sizes)])
    try:
        symbols = SymbolDecoder(data).decode(index, _tables(heads))
    except EntropyCodingError as exc:
        raise CorruptStreamError(f"ncodec video stream is corrupt: {exc}") from None
    for t, part in zip(heads, np.split(symbols, np.cumsum(sizes)[:-1])):
        if np.abs(part).max(initial=0) > qmax(t.bits):
            raise CorruptStreamError("ncodec video stream is corrupt: symbol outside its quantiser's range")
        t.symbols = part.reshape(t.shape)
    return heads
