"""Fitting a network to a clip: the encoder side of the video codec.

One loop (:func:`run_epochs`) serves every stage: the main fit of a :class:`VideoINR`, and the
fine-tunes of the stored part only (after pruning, and quantisation-aware).  Epochs visit the
frames in an order drawn from ``(seed, epoch)`` and the learning rate is a pure function of the
step (linear warm-up, cosine decay), so a run is reproducible for a seed and a resumed run
continues exactly as an uninterrupted one would.  Each stage is a :class:`ncodec.training.TrainingLoop`
over epochs; the main fit can keep a checkpoint (model, optimizer, epoch, rollback state), saved
every two minutes, at the end and on Ctrl-C or SIGTERM, and resume from it, e.g. across GPU leases.
A :class:`RollbackGuard` keeps a large network's fit from ending worse than it was: an epoch whose
loss jumps goes back to the best epoch's weights at half the learning rate.
"""
from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..checkpoints import CheckpointFile
from ..errors import UsageError
from ..training import TrainingLoop, bf16_pays, set_lr, warmup_cosine_lr
from .bitstream import fake_quantize
from .models import Decoder, INRConfig, VideoINR

CHECKPOINT_SECONDS = 120.0   # the main fit's checkpoint period


def frames_to_tensor(frames: np.ndarray, cfg: INRConfig, device: torch.device) -> torch.Tensor:
    """T x H x W x 3 uint8 -> T x 3 x height x width uint8 on ``device``, edge-padded to the model size."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    h, w = frames.shape[1:3]
    if (h, w) != (cfg.height, cfg.width):
        t = F.pad(t.float(), (0, cfg.width - w, 0, cfg.height - h), mode="replicate").to(torch.uint8)
    return t.contiguous(memory_format=torch.channels_last).to(device)


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def epoch_order(seed: int, epoch: int, frames: int) -> torch.Tensor:
    """The frame order of one epoch, a function of (seed, epoch) only."""
    return torch.randperm(frames, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class RollbackGuard:
    """The best epoch so far (lowest mean loss): its parameters and optimizer state.

    An epoch whose mean loss is not finite or above ``SPIKE`` times the best puts both back and
    halves the learning rate for the rest of the stage (``lr_scale``); at the end of the stage
    the best epoch's parameters are kept if the last epoch's loss is higher.  Its state travels in
    the fit's checkpoint, so a resumed fit rolls back exactly as an uninterrupted one."""

    SPIKE = 1.5   # 1.8 dB of PSNR lost in one epoch

    def __init__(self, params: list[torch.Tensor], optimizer: torch.optim.Optimizer):
        self.params, self.optimizer = params, optimizer
        self.best_loss, self.lr_scale, self.best = math.inf, 1.0, None

    def end_epoch(self, loss: float) -> bool:
        """Record an epoch's mean loss; True when it rolled back."""
        if loss < self.best_loss:
            self.best_loss = loss
            self.best = {"params": [p.detach().clone() for p in self.params],
                         "optimizer": copy.deepcopy(self.optimizer.state_dict())}
            return False
        if self.best is not None and not loss <= self.SPIKE * self.best_loss:
            self._restore(optimizer=True)
            self.lr_scale /= 2
            return True
        return False

    def finish(self, loss: float) -> float:
        """At the end of the stage: the best epoch's parameters if ``loss`` (the last epoch's) is
        higher; returns the loss of the parameters kept."""
        if self.best is None or loss <= self.best_loss:
            return loss
        self._restore(optimizer=False)
        return self.best_loss

    def _restore(self, optimizer: bool) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, self.best["params"]):
                p.copy_(saved)
        if optimizer:
            self.optimizer.load_state_dict(copy.deepcopy(self.best["optimizer"]))

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "lr_scale": self.lr_scale, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss, self.lr_scale, self.best = state["best_loss"], state["lr_scale"], state["best"]


def run_epochs(params: list[torch.Tensor], predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               frames: torch.Tensor, size: tuple[int, int], lr: float, batch_size: int, seed: int,
               loop: TrainingLoop, optimizer: torch.optim.Optimizer | None = None,
               after_step: Callable[[], None] | None = None, guard: RollbackGuard | None = None) -> float:
    """Adam on the MSE of ``predict(batch_frames, batch_index)`` against the frames (cropped to
    ``size`` = (H, W)) over the epochs ``loop`` counts, under a :class:`RollbackGuard` (``guard``,
    or a fresh one); returns the mean MSE of the epoch whose parameters are kept.  ``after_step``
    runs after every update (e.g. re-applying a pruning mask).  The forward pass runs under bf16
    autocast where that is faster (:func:`~ncodec.training.bf16_pays`)."""
    opt = optimizer or torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    guard = guard or RollbackGuard(params, opt)
    bf16 = bf16_pays(frames.device)
    n = frames.shape[0]
    per_epoch = -(-n // batch_size)
    h, w = size
    mse = float("nan")
    with loop:
        while not loop.over():
            epoch = loop.step
            order = epoch_order(seed, epoch, n).to(frames.device)
            total = torch.zeros((), dtype=torch.float64, device=frames.device)
            for i in range(per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                set_lr(opt, guard.lr_scale * warmup_cosine_lr(epoch * per_epoch + i, loop.total * per_epoch, lr))
                target = frames[idx].float() / 255
                with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=bf16):
                    out = predict(target, idx)
                loss = F.mse_loss(out[:, :, :h, :w].float(), target[:, :, :h, :w])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if after_step is not None:
                    after_step()
                total += loss.detach().double() * len(idx)
            mse = float(total) / n
            if guard.end_epoch(mse):
                loop.note(f"{loop.desc}: the loss jumped to {mse:.2e} at epoch {epoch + 1}; back to the best "
                          f"weights ({guard.best_loss:.2e}) at {guard.lr_scale:g}x the learning rate")
            loop.end_step(lambda: {"loss": f"{mse:.2e}", "psnr": f"{psnr_from_mse(mse):.2f}dB"})
    return guard.finish(mse)


def fingerprint(cfg: INRConfig, frames: np.ndarray, **settings) -> str:
    """What a checkpoint must match to be resumed: architecture, the exact frames, the settings."""
    h = hashlib.sha256(repr(sorted(cfg.to_fields().items())).encode())
    h.update(repr(sorted(settings.items())).encode())
    h.update(np.ascontiguousarray(frames).tobytes())
    return h.hexdigest()


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed torch and ask CUDA for deterministic kernels."""
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def fit(cfg: INRConfig, frames: np.ndarray, epochs: int, lr: float, batch_size: int, seed: int,
        device: torch.device, checkpoint: Path | None = None, progress: bool = True) -> tuple[VideoINR, float]:
    """Fit a fresh (or checkpointed) VideoINR to T x H x W x 3 uint8 ``frames``; returns it and the final MSE."""
    seed_everything(seed, device)
    model = VideoINR(cfg).to(device, memory_format=torch.channels_last)
    data = frames_to_tensor(frames, cfg, device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    guard = RollbackGuard(list(model.parameters()), opt)
    key = fingerprint(cfg, frames, epochs=epochs, lr=lr, batch=batch_size, seed=seed)
    ckpt = CheckpointFile(checkpoint, CHECKPOINT_SECONDS) if checkpoint else None
    state = ckpt.load(device) if ckpt else None
    if state is not None:
        if state.get("key") != key:
            raise UsageError(f"checkpoint {ckpt.path} belongs to another clip or other settings; "
                             "delete it or give another --checkpoint path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if "guard" in state:
            guard.load_state_dict(state["guard"])

    def saved() -> dict:
        return {"key": key, "epoch": loop.step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "guard": guard.state_dict()}

    loop = TrainingLoop(epochs, f"fit {cfg.arch}", saved, ckpt, start=int(state["epoch"]) if state else 0,
                        unit="epoch", show_every=1, show=progress)
    mse = run_epochs(list(model.parameters()), lambda x, i: model(x, i), data, frames.shape[1:3], lr, batch_size,
                     seed, loop, opt, guard=guard)
    return model, mse


def finetune(decoder: Decoder, embeddings: torch.Tensor | None, frames: np.ndarray, epochs: int, lr: float,
             seed: int, device: torch.device, masks: dict[str, torch.Tensor] | None = None,
             quant: dict[str, tuple[int, bool]] | None = None, desc: str = "fine-tune",
             progress: bool = True) -> float:
    """Fine-tune the stored part (decoder weights, and HNeRV's embeddings as free parameters) in place.

    ``masks`` keeps pruned weights at zero; ``quant`` (name -> (bits, per-channel)) trains through
    the quantiser with a straight-through gradient ("embeddings" names the embeddings)."""
    cfg = decoder.cfg
    params = dict(decoder.named_parameters())
    trainable = list(params.values()) + ([embeddings] if embeddings is not None else [])

    def predict(_frames, idx):
        weights = params
        if quant:
            weights = {n: fake_quantize(p, *quant[n]) if n in quant else p for n, p in params.items()}
        z = embeddings
        if z is not None and quant and "embeddings" in quant:
            z = fake_quantize(z, *quant["embeddings"])
        return functional_call(decoder, weights, (idx, z[idx] if z is not None else None))

    def apply_masks():
        with torch.no_grad():
            for n, m in (masks or {}).items():
                params[n].mul_(m)

    data = frames_to_tensor(frames, cfg, device)
    loop = TrainingLoop(epochs, desc, unit="epoch", show_every=1, show=progress)
    return run_epochs(trainable, predict, data, frames.shape[1:3], lr, 1, seed + 1, loop,
                      after_step=apply_masks if masks else None)


def prune_masks(decoder: Decoder, fraction: float) -> dict[str, torch.Tensor]:
    """Global magnitude pruning: masks zeroing the smallest ``fraction`` of all weight (not bias) values."""
    weights = {n: p for n, p in decoder.named_parameters() if p.dim() >= 2}
    values = torch.cat([p.detach().abs().flatten() for p in weights.values()])
    k = int(fraction * values.numel())
    if k == 0:
        return {}
    threshold = values.kthvalue(k).values
    return {n: (p.detach().abs() > threshold).to(p.dtype) for n, p in weights.items()}


@torch.no_grad()
def embed_frames(model: VideoINR, frames: np.ndarray, device: torch.device, batch: int = 8) -> torch.Tensor | None:
    """HNeRV: the encoder's embedding of every frame (T x embed_dim x grid); None for NeRV."""
    if model.encoder is None:
        return None
    data = frames_to_tensor(frames, model.cfg, device)
    return torch.cat([model.encoder(data[i:i + batch].float() / 255) for i in range(0, len(data), batch)])
