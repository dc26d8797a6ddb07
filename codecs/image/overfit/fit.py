"""Fitting an overfitted image model to one image: presets, the quantisation schedule, progress.

The schedule (one run of ``iterations`` steps of Adam on the latent grids and SOAP on the networks):

1. a warm-up: ``candidates`` initialisations, ``warmup`` steps each; the best one goes on;
2. the main phase: soft rounding of the latents (temperature falling from 0.35 to 0.08) plus
   Gaussian noise, for the rate and for the synthesis alike, with a cosine learning-rate decay;
3. the last ``hard_fraction`` of the steps: the latents rounded and fixed (what the decoder sees),
   the networks fine-tuned to them at a small learning rate.

A checkpoint (when given) is saved every few minutes, at the end and on Ctrl-C or SIGTERM; the
next run with the same image and settings resumes from it.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ...checkpoints import CheckpointFile
from ...errors import UsageError
from ...training import TrainingLoop, set_lr
from .model import OverfitConfig, OverfitModel, laplace_bits

CHECKPOINT_SECONDS = 120.0
LATENT_LR_SCALE = 16.0     # the latents learn 16x faster than the networks (Cool-chic's encoder gain)
NETWORK_CLIP = 0.1         # gradient-norm clip of the networks' weights


@dataclass(frozen=True)
class Preset:
    """How long a fit runs: steps of the main run, and the warm-up's candidates and their steps."""

    iterations: int
    candidates: int
    warmup: int
    lr: float = 1e-2
    hard_fraction: float = 0.1


PRESETS = {    # 768x512 on 2 CPU cores (0.23 s a step): about 9, 28 and 80 minutes
    "fast": Preset(iterations=2200, candidates=2, warmup=50),
    "medium": Preset(iterations=7000, candidates=3, warmup=100),
    "slow": Preset(iterations=20000, candidates=4, warmup=250),
}
DEFAULT_PRESET = "fast"


def soft_round(y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Agustsson & Theis's differentiable rounding: tends to rounding as the temperature falls."""
    floor = torch.floor(y).detach()
    r = y - floor - 0.5
    alpha = 1.0 / temperature
    return floor + 0.5 + torch.tanh(alpha * r) / (2 * math.tanh(alpha / 2))


def quantise(y: torch.Tensor, progress: float, hard_from: float, noise: torch.Generator) -> torch.Tensor:
    """The latent values training sees at ``progress`` (0..1) of the run: soft rounding, Gaussian
    noise, soft rounding again (C3's recipe; temperature 0.35 -> 0.08, noise 0.22 -> 0.15, Cool-chic
    5's intra schedule), then plain rounding: the last phase fits the networks to the latents as coded,
    which no longer move."""
    if progress >= hard_from:
        return torch.round(y).detach()
    t = progress / hard_from
    temperature = 0.35 - 0.27 * t
    sigma = 0.22 - 0.07 * t
    jitter = torch.randn(y.shape, generator=noise, device=y.device, dtype=y.dtype) * sigma
    return soft_round(soft_round(y, temperature) + jitter, temperature)


def rd_terms(model: OverfitModel, x: torch.Tensor, latents: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE (pixels in [0, 1]) and bits per pixel of the latents under the ARM."""
    mse = (model.synthesise(latents) - x).square().mean()
    bits = sum(laplace_bits(latents[k], *model.arm_params(latents, k)).sum() for k in range(len(latents)))
    return mse, bits / (model.h * model.w)


def rd_loss(model: OverfitModel, x: torch.Tensor, lam: float, progress: float, hard_from: float, seed: int):
    """The training loss lambda * 255^2 * MSE + bpp (the other image codecs' convention), MSE and bpp;
    the noise comes from ``seed``, so a resumed fit repeats an uninterrupted one."""
    noise = torch.Generator(x.device).manual_seed(seed)
    latents = [quantise(g, progress, hard_from, noise) for g in model.grids]
    mse, bpp = rd_terms(model, x, latents)
    return lam * 255**2 * mse + bpp, mse, bpp


def _lr(preset: Preset, progress: float, hard_from: float) -> float:
    """Cosine decay over the main phase; in the last phase a second cosine from 1 % to 0.1 %."""
    if progress >= hard_from:
        u = (progress - hard_from) / (1 - hard_from)
        return preset.lr * 0.01 * (0.1 + 0.45 * (1 + math.cos(math.pi * u)))
    return preset.lr * 0.5 * (1 + math.cos(math.pi * progress / hard_from))


def _new_model(x: torch.Tensor, config: OverfitConfig, seed: int) -> OverfitModel:
    torch.manual_seed(seed)
    return OverfitModel(x.shape[2], x.shape[3], config).to(x.device)


def _fingerprint(x: torch.Tensor, lam: float, preset: Preset, seed: int, config: OverfitConfig) -> str:
    h = hashlib.sha256((x * 255).round().to(torch.uint8).cpu().numpy().tobytes())
    h.update(repr((lam, preset, seed, config)).encode())
    return h.hexdigest()[:16]


def fit(x: torch.Tensor, lam: float, preset: Preset, seed: int = 0, config: OverfitConfig = OverfitConfig(),
        checkpoint: Path | None = None, progress: bool = True) -> OverfitModel:
    """An overfitted model of image ``x`` ((1, 3, H, W) in [0, 1]) trained for ``lam``."""
    hard_from = 1.0 - preset.hard_fraction
    total = preset.candidates * preset.warmup + preset.iterations
    key = _fingerprint(x, lam, preset, seed, config)
    ckpt = CheckpointFile(checkpoint, CHECKPOINT_SECONDS) if checkpoint else None
    state = ckpt.load(x.device) if ckpt else None
    if state is not None and state.get("key") != key:
        raise UsageError(f"checkpoint {ckpt.path} belongs to another image or other settings; "
                         "delete it or give another --checkpoint path")
    model = optimizer = None
    if state is not None:
        model = _new_model(x, config, seed)
        model.load_state_dict(state["model"])
        optimizer = FitOptimizer(model, preset)
        optimizer.load_state_dict(state["optimizer"])

    def saved() -> dict:
        if optimizer is None:        # still warming up: nothing worth keeping yet
            return {"key": key, "step": 0, "elapsed": loop.elapsed}
        return {"key": key, "step": loop.step, "elapsed": loop.elapsed, "model": model.state_dict(),
                "optimizer": optimizer.state_dict()}

    start = int(state["step"]) if state and "model" in state else 0
    with TrainingLoop(total, "fit overfit", saved, ckpt, start=start, elapsed=float(state["elapsed"]) if start else 0.0,
                      shown=("loss", "bpp", "psnr"), show=progress) as loop:
        if model is None:
            model, optimizer = _warm_up(x, lam, preset, seed, config, loop, hard_from)
        while not loop.over():
            p = (loop.step - preset.candidates * preset.warmup) / preset.iterations
            set_lr(optimizer, _lr(preset, p, hard_from))
            loss, mse, bpp = rd_loss(model, x, lam, p, hard_from, seed * 1_000_003 + loop.step)
            _step(optimizer, loss)
            loop.end_step(_stats(loss, mse, bpp))
    return model


def _warm_up(x, lam, preset, seed, config, loop, hard_from) -> tuple[OverfitModel, FitOptimizer]:
    """Train ``candidates`` fresh models for ``warmup`` steps each; the best (lowest loss) goes on."""
    best = None
    for c in range(preset.candidates):
        model = _new_model(x, config, seed * 1000 + c)
        optimizer = FitOptimizer(model, preset)
        for _ in range(preset.warmup):
            loss, mse, bpp = rd_loss(model, x, lam, 0.0, hard_from, seed * 1_000_003 + loop.step)
            _step(optimizer, loss)
            loop.end_step(_stats(loss, mse, bpp))
        if best is None or loss.item() < best[0]:
            best = (loss.item(), model, optimizer)
    return best[1], best[2]


def soap(params: list[torch.nn.Parameter], lr: float):
    """heavyball's SOAP as the fitted codecs use it for their small networks."""
    import heavyball      # here, not at the top: decoding never pays for importing it
    import heavyball.utils

    heavyball.utils.compile_mode = None   # eager: compiled SOAP took 25 % longer on these small networks
    return heavyball.ForeachSOAP(params, lr=lr, betas=(0.95, 0.95), weight_decay=0.0, precondition_frequency=10)


def soap_step(optimizer) -> None:
    """One step of a :func:`soap` optimiser, without heavyball's warnings of every learning-rate
    change and of its views' ``.grad``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.step()


class FitOptimizer:
    """Adam for the latent grids and SOAP (heavyball's) for the networks, as Cool-chic does: SOAP
    gained 0.9 dB at a lower rate over Adam alone (see docs/experiments.md).  ``param_groups`` are
    the latents' and the networks'; the state round-trips exactly through :meth:`state_dict`."""

    def __init__(self, model: OverfitModel, preset: Preset):
        self.latents = torch.optim.Adam(list(model.grids), lr=preset.lr)
        self.networks = soap([p for name, p in model.named_parameters() if not name.startswith("grids")], preset.lr)
        self.param_groups[0]["scale"], self.param_groups[1]["scale"] = LATENT_LR_SCALE, 1.0
        set_lr(self, preset.lr)

    @property
    def param_groups(self) -> list[dict]:
        return [self.latents.param_groups[0], self.networks.param_groups[0]]   # loading replaces Adam's

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.latents.zero_grad(set_to_none)
        self.networks.zero_grad(set_to_none)

    def step(self) -> None:
        self.latents.step()
        soap_step(self.networks)

    def state_dict(self) -> dict:
        # heavyball keys its state by views of the parameters, which torch's state_dict cannot map,
        # and keeps its preconditioning schedule outside it
        soap = self.networks
        views = [soap.mapping.get(p, []) for p in self.param_groups[1]["params"]]
        return {"latents": self.latents.state_dict(), "networks": [[soap.state[v] for v in vs] for vs in views],
                "schedule": dict(soap._inner_group)}     # when SOAP next refreshes its preconditioner

    def load_state_dict(self, state: dict) -> None:
        from heavyball.utils import merge_group

        self.latents.load_state_dict(state["latents"])
        soap, group = self.networks, self.param_groups[1]
        soap._inner_group.update(state["schedule"])
        for p, saved in zip(group["params"], state["networks"]):
            if saved:
                soap.mapping[p] = views = merge_group(group, p)
                for v, entry in zip(views, saved):
                    soap.state[v] = entry


def _step(optimizer: FitOptimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(optimizer.param_groups[1]["params"], NETWORK_CLIP)
    optimizer.step()


def _stats(loss, mse, bpp):
    return lambda: {"loss": round(loss.item(), 4), "bpp": round(bpp.item(), 4),
                    "psnr": round(-10 * math.log10(max(mse.item(), 1e-12)), 2)}
