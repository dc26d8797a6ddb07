"""Exact integer evaluation of the networks that produce entropy-model parameters.

A learned codec's decoder recomputes the coder's probabilities with a network; if its
float result differs by one ulp from the encoder's (another CPU, a GPU, another thread
count), the range decoder desynchronises.  :class:`FixedPointNet` removes that failure:
it re-expresses a trained stack of Conv2d / ConvTranspose2d / ReLU / LeakyReLU layers in
fixed point and evaluates it with float64 tensors that only ever hold integers whose
partial sums stay below 2**52.  Every product and every sum is then exact, so the
result is the same integer for any summation order, BLAS, thread count or device (on CUDA
with cuDNN off: its FFT and Winograd algorithms are not exact).

Conventions: activations are integers in Q``ACT_FRAC`` (value = int / 2**ACT_FRAC),
clamped to +-2**ACT_CLAMP_BITS real units; weights are rounded per layer to the finest
power-of-two scale that keeps the worst-case accumulator below 2**52.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .tiling import run_tiled

ACT_FRAC = 10
ACT_CLAMP_BITS = 14
_ACC_LIMIT_BITS = 52
_MAX_WEIGHT_FRAC = 24
_SLOPE_FRAC = 16


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """Float tensor -> float64 tensor of integers in Q ACT_FRAC (rounding half to even)."""
    return torch.round(x.double() * (1 << ACT_FRAC))


def from_fixed(x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Q ACT_FRAC integers -> real values (exact for |x| < 2**(24-ACT_FRAC) in float32)."""
    return (x / (1 << ACT_FRAC)).to(dtype)


class _FixedLayer:
    def __init__(self, layer: nn.Module):
        self.kind = type(layer).__name__
        self.layer = layer
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            w = layer.weight.detach().double().cpu()
            # Worst case |acc| <= max|a| * sum|w| over everything one output can see.
            if isinstance(layer, nn.Conv2d):
                l1 = w.abs().sum(dim=(1, 2, 3)).max().item()
            else:
                l1 = w.abs().sum(dim=(0, 2, 3)).max().item()
            act_bits = ACT_FRAC + ACT_CLAMP_BITS
            frac = _ACC_LIMIT_BITS - 1 - act_bits - max(0, math.ceil(math.log2(max(l1, 1e-12))))
            self.frac = int(min(frac, _MAX_WEIGHT_FRAC))
            if self.frac < 4:
                raise ValueError(f"layer {layer} has weights too large for exact fixed-point evaluation")
            self.weight = torch.round(w * 2.0**self.frac).contiguous()
            b = layer.bias.detach().double().cpu() if layer.bias is not None else torch.zeros(w.shape[0 if self.kind == "Conv2d" else 1])
            self.bias = torch.round(b * 2.0 ** (self.frac + ACT_FRAC)).view(1, -1, 1, 1)
        elif isinstance(layer, nn.LeakyReLU):
            self.slope = round(layer.negative_slope * (1 << _SLOPE_FRAC)) / (1 << _SLOPE_FRAC)   # S / 2^16, exact
        elif not isinstance(layer, nn.ReLU):
            raise TypeError(f"{type(layer).__name__} is not supported in fixed-point entropy paths")

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        L = self.layer
        if self.kind == "ReLU":
            return a.clamp_min(0)
        if self.kind == "LeakyReLU":     # a * S / 2^16 is exact (|a| <= 2^24, S < 2^16); floor keeps integers
            return F.leaky_relu(a, self.slope).floor_()
        if self.weight.device != a.device:      # kept on the device of the last call
            self.weight, self.bias = self.weight.to(a.device), self.bias.to(a.device)
        if self.kind == "Conv2d":
            acc = F.conv2d(a, self.weight, None, L.stride, L.padding, L.dilation, L.groups)
        else:
            acc = F.conv_transpose2d(a, self.weight, None, L.stride, L.padding, L.output_padding, L.groups, L.dilation)
        return _rescale(acc.add_(self.bias), self.frac)


_LIMIT = float(1 << (ACT_FRAC + ACT_CLAMP_BITS))


def _rescale(acc, frac: int):
    """An accumulator (weights in Q ``frac`` times activations) back to clamped Q ACT_FRAC activations,
    in place; torch tensors and numpy arrays alike (2**-frac scales exactly)."""
    acc *= 2.0**-frac
    if isinstance(acc, torch.Tensor):
        return acc.floor_().clamp_(-_LIMIT, _LIMIT)
    np.floor(acc, out=acc)
    np.maximum(acc, -_LIMIT, out=acc)
    return np.minimum(acc, _LIMIT, out=acc)


class FixedPointNet:
    """A trained ``nn.Sequential`` evaluated in exact integer arithmetic (see module doc).

    Large inputs are evaluated tile by tile with a margin wider than the network's receptive
    field, so that no layer's intermediate buffer grows with the image; because every tile is
    computed exactly, the tiled result is bit-identical to the whole-tensor one."""

    TILE_BYTES = 1 << 27   # budget for the largest per-tile intermediate (im2col) buffer

    def __init__(self, net: nn.Sequential):
        self.layers = [_FixedLayer(m) for m in net]
        self.scale, self.margin, self.cost = _geometry(net)

    @torch.no_grad()
    def __call__(self, x_fixed: torch.Tensor) -> torch.Tensor:
        """Q ACT_FRAC integer input (float64) -> Q ACT_FRAC integer output (float64)."""
        if x_fixed.dtype != torch.float64:
            raise TypeError("fixed-point input must be a float64 tensor of integers")
        # tile side (input units) keeping the largest buffer under TILE_BYTES
        tile = max(4, int(math.sqrt(self.TILE_BYTES / (8 * self.cost * x_fixed.shape[0]))))
        return run_tiled(self._run, x_fixed, self.scale, tile, self.margin)

    def _run(self, a: torch.Tensor) -> torch.Tensor:
        # cuDNN may pick FFT/Winograd algorithms, which are not exact; the native kernels are.
        with torch.backends.cudnn.flags(enabled=False), torch.backends.mkldnn.flags(enabled=False):
            for layer in self.layers:
                a = layer(a)
        return a


class FixedPointMLP:
    """A trained stack of 1x1 ``Conv2d`` and ReLU layers evaluated exactly on rows of a numpy matrix:
    the same integers as :class:`FixedPointNet` gives for the same layers (same weights, same
    rescaling), without torch's per-call cost, for the many small batches of auto-regressive decoding.

    Each layer's weights and bias are stored already scaled by ``2**-frac`` (exact: a power of two
    times integers whose partial sums stay below 2**52), and a ReLU that follows a layer becomes the
    lower bound of that layer's clamp, so a layer costs four array operations."""

    def __init__(self, net: nn.Sequential):
        self.layers = []      # [weight, bias, lower clamp], or None for a ReLU that no layer precedes
        for layer in net:
            fixed = _FixedLayer(layer)
            if fixed.kind == "Conv2d":
                if layer.kernel_size != (1, 1) or layer.groups != 1:
                    raise TypeError("FixedPointMLP takes 1x1 convolutions only")
                scale = 2.0**-fixed.frac
                self.layers.append([fixed.weight[:, :, 0, 0].T.numpy() * scale, fixed.bias.view(-1).numpy() * scale,
                                    -_LIMIT])
            elif fixed.kind == "ReLU":
                if self.layers and self.layers[-1] is not None:
                    self.layers[-1][2] = 0.0
                else:
                    self.layers.append(None)
            else:
                raise TypeError(f"{fixed.kind} is not supported by FixedPointMLP")

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """(n, inputs) float64 Q ACT_FRAC integers -> (n, outputs) float64 Q ACT_FRAC integers."""
        a = rows
        for layer in self.layers:
            if layer is None:
                a = np.maximum(a, 0.0)
                continue
            weight, bias, lower = layer
            a = a @ weight            # integers below 2**52 (times 2**-frac): any summation order is exact
            a += bias
            np.floor(a, out=a)
            np.maximum(a, lower, out=a)
            np.minimum(a, _LIMIT, out=a)
        return a


def _geometry(net: nn.Sequential) -> tuple[tuple, tuple, float]:
    """Per axis (H, W): output/input size ratio and safe tile margin in input units; and the largest
    buffer per input position in float64 elements, of a stack of convolutions and pointwise activations."""
    unit, radius, cost = [1.0, 1.0], [0.0, 0.0], 1.0     # unit: one activation pixel in input pixels
    for layer in net:
        if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        transposed = isinstance(layer, nn.ConvTranspose2d)
        for axis in (0, 1):
            k, st = layer.kernel_size[axis], layer.stride[axis]
            if transposed:
                radius[axis] += math.ceil((k // 2) / st) * unit[axis]
                unit[axis] /= st
            else:
                radius[axis] += (k // 2) * unit[axis] * layer.dilation[axis]
        area = unit[0] * unit[1] * (1 if transposed else layer.stride[0] * layer.stride[1])
        kernel = layer.kernel_size[0] * layer.kernel_size[1]
        cost = max(cost, layer.in_channels * kernel / area, layer.out_channels / area)
        if not transposed:
            unit = [unit[0] * layer.stride[0], unit[1] * layer.stride[1]]
    return (1.0 / unit[0], 1.0 / unit[1]), (int(math.ceil(radius[0])) + 1, int(math.ceil(radius[1])) + 1), cost
