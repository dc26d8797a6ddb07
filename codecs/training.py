"""The loop machinery every trainer shares: image and audio training, video fitting.

A :class:`TrainingLoop` runs one invocation of a resumable loop over steps (video fitting: over
epochs).  It decides when to stop (the step budget, ``max_minutes`` of wall time over all
invocations, ``stop_after_minutes`` of this one), gives the learning rate of the schedule, shows a
progress bar with the time left, appends statistics to the run's ``log.jsonl``, and saves the
checkpoint every few minutes, at the end, and when Ctrl-C or SIGTERM interrupts it, so that the
next invocation resumes where this one stopped.  :class:`RDOptimizer` is the optimizer pair of the
rate-distortion trainers and :func:`export` writes their weights.  The modalities supply the
data, the model, the loss and what a checkpoint holds.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from .checkpoints import CheckpointFile, sigterm_as_interrupt
from .errors import UsageError

CHECKPOINT_SECONDS = 300.0   # a run folder's checkpoint period
LOG_EVERY = 200              # steps between log.jsonl lines (the first step of every invocation is logged too)
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"


def step_lr(peak: float, progress: float, drop_at: float) -> float:
    """``peak`` until the fraction ``drop_at`` of the run, then a tenth of it."""
    return peak * (0.1 if progress >= drop_at else 1.0)


def warmup_cosine_lr(step: int, total: int, peak: float, warmup: float = 0.1) -> float:
    """Linear warm-up over the first ``warmup`` of the steps, then cosine decay to zero."""
    warm = max(1, int(warmup * total))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group's learning rate: ``lr`` times the group's ``scale`` (1 when absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("scale", 1.0)


def bf16_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds up work on ``device``: on CUDA and on CPUs with bf16 kernels
    (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower than float32."""
    return device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def named_preset(preset, presets: dict):
    """``preset`` itself, or the preset of ``presets`` it names; UsageError for an unknown name."""
    if not isinstance(preset, str):
        return preset
    if preset not in presets:
        raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(presets)}")
    return presets[preset]


def run_folder(out: Path, every: float = CHECKPOINT_SECONDS) -> tuple[CheckpointFile, Path]:
    """A run folder's checkpoint (``checkpoint.pt``, saved every ``every`` seconds) and log
    (``log.jsonl``); the folder is made if need be."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return CheckpointFile(out / "checkpoint.pt", every), out / "log.jsonl"


class TrainingLoop:
    """One invocation of a resumable training loop, used as a context manager around the loop::

        with TrainingLoop(steps, "train", state, checkpoint, log) as loop:
            while not loop.over():
                ...                       # one step at learning rate loop.lr(peak)
                loop.end_step(stats)

    ``total`` steps make the schedule; ``start`` of them and ``elapsed`` seconds were spent by
    earlier invocations.  ``state()`` gives what ``checkpoint`` saves.  The bar shows the
    statistics named in ``shown`` (all when None) every ``show_every`` steps.  ``main`` is False
    on the torchrun ranks other than 0, which neither show, log nor save.
    """

    def __init__(self, total: int, desc: str, state: Callable[[], dict] | None = None,
                 checkpoint: CheckpointFile | None = None, log: Path | None = None, *, start: int = 0,
                 elapsed: float = 0.0, max_minutes: float = 0.0, stop_after_minutes: float = 0.0,
                 unit: str = "step", shown: tuple[str, ...] | None = None, show_every: int = 20,
                 show: bool = True, main: bool = True):
        self.total, self.desc, self.state, self.checkpoint, self.log = total, desc, state, checkpoint, log
        self.start, self.step, self.elapsed_before = start, start, elapsed
        self.max_minutes, self.stop_after_minutes = max_minutes, stop_after_minutes
        self.unit, self.shown, self.show_every, self.show, self.main = unit, shown, show_every, show, main
        self._started = time.monotonic()

    def __enter__(self) -> TrainingLoop:
        self._exit = ExitStack()
        self._exit.enter_context(sigterm_as_interrupt())
        self._bar = self._exit.enter_context(tqdm(
            total=self.total, initial=self.step, desc=self.desc, unit=self.unit, dynamic_ncols=True,
            bar_format=BAR_FORMAT, disable=not (self.main and self.show)))
        self._log = self._exit.enter_context(open(self.log, "a")) if self.log is not None and self.main else None
        self._started = time.monotonic()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        with self._exit:
            if kind is None or issubclass(kind, KeyboardInterrupt):
                self.save()   # at the end, and on Ctrl-C or SIGTERM: the steps since the last save are kept

    @property
    def elapsed(self) -> float:
        """Wall time of the whole run so far, earlier invocations included."""
        return self.elapsed_before + time.monotonic() - self._started

    def progress(self) -> float:
        """The fraction of the schedule done: of the steps, or of ``max_minutes`` if that is further."""
        done = self.step / self.total if self.total else 1.0
        if self.max_minutes:
            done = max(done, self.elapsed / (60 * self.max_minutes))
        return done

    def over(self) -> bool:
        """Whether this invocation ends here: the schedule is done or its own time is up."""
        ran = time.monotonic() - self._started
        return self.progress() >= 1.0 or bool(self.stop_after_minutes) and ran > 60 * self.stop_after_minutes

    def lr(self, peak: float, drop_at: float = 0.85) -> float:
        """The learning rate now, on the step schedule (:func:`step_lr`)."""
        return step_lr(peak, self.progress(), drop_at)

    def time_left(self) -> float | None:
        """Seconds until this invocation ends, at the pace of its steps so far (None before the first)."""
        done = self.step - self.start
        if done == 0:
            return None
        ran = time.monotonic() - self._started
        left = (self.total - self.step) * ran / done
        if self.max_minutes:
            left = min(left, 60 * self.max_minutes - self.elapsed)
        if self.stop_after_minutes:
            left = min(left, 60 * self.stop_after_minutes - ran)
        return max(left, 0.0)

    def end_step(self, stats: Callable[[], dict] | None = None) -> None:
        """Count a finished step.  After the first step of the invocation and every ``show_every``
        steps the bar shows ``stats()`` and the time left; after the first and every LOG_EVERY steps
        the log records them.  The checkpoint is saved when it is due."""
        self.step += 1
        if not self.main:
            return
        self._bar.update(1)
        first = self.step == self.start + 1
        if stats is not None and (self.show or self._log) and (first or self.step % self.show_every == 0):
            values = stats()
            shown = values if self.shown is None else {k: values[k] for k in self.shown}
            self._bar.set_postfix({**shown, "left": tqdm.format_interval(self.time_left())})
            if self._log is not None and (first or self.step % LOG_EVERY == 0):
                self._log.write(json.dumps({"step": self.step, **values}) + "\n")
                self._log.flush()
        if self.checkpoint is not None and self.checkpoint.due():
            self.save()

    def note(self, message: str) -> None:
        """A line above the progress bar (when the bar is shown)."""
        if self.main and self.show:
            self._bar.write(message)

    def save(self) -> None:
        """Save the checkpoint now (on the main process, when there is a checkpoint)."""
        if self.main and self.checkpoint is not None:
            self.checkpoint.save(self.state())


class RDOptimizer:
    """Adam on a model's parameters, in groups with their own learning-rate multiplier, and a
    second Adam on its entropy bottlenecks' quantiles, which minimises the model's auxiliary loss.
    The state dict keys are ``optimizer`` and ``aux_optimizer``."""

    def __init__(self, groups: list[tuple[list[torch.nn.Parameter], float]], quantiles: list[torch.nn.Parameter],
                 lr: float, aux_lr: float = 1e-3):
        self.params = [p for params, _ in groups for p in params]
        self.quantiles = quantiles
        self.main = torch.optim.Adam([{"params": params, "scale": scale} for params, scale in groups], lr=lr)
        self.aux = torch.optim.Adam(quantiles, lr=aux_lr)

    def set_lr(self, lr: float) -> None:
        set_lr(self.main, lr)

    def step(self, loss: torch.Tensor, aux_loss: Callable[[], torch.Tensor],
             sync_aux: Callable[[list[torch.nn.Parameter]], None] | None = None, clip: float = 1.0) -> torch.Tensor:
        """One update on ``loss`` (gradient norm clipped to ``clip``), then one on ``aux_loss()``,
        whose gradients ``sync_aux`` may first average across processes; returns the auxiliary loss."""
        self.main.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, clip)
        self.main.step()
        aux = aux_loss()
        self.aux.zero_grad(set_to_none=True)
        aux.backward()
        if sync_aux is not None:
            sync_aux(self.quantiles)
        self.aux.step()
        return aux

    def state_dict(self) -> dict:
        return {"optimizer": self.main.state_dict(), "aux_optimizer": self.aux.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state["optimizer"])
        self.aux.load_state_dict(state["aux_optimizer"])


def export(write: Callable[..., bytes], model: torch.nn.Module, path: Path, extra: dict) -> bytes:
    """Write the trained ``model`` with ``write`` (a modality's ``export_model``), say so, return the digest."""
    digest = write(model, path, extra=extra)
    print(f"exported {path} (digest {digest.hex()})")
    return digest
