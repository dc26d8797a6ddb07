"""Rate-distortion training of the image models (``ncodec train image``).

Random crops from a folder of images, one random quality per sample (gain units make
one model cover every rate), loss = lambda(q) * 255^2 * MSE + bpp.  CUDA runs use bf16
autocast by default, CPU runs float32: on CPUs without AMX/AVX512-BF16 (this project's
build machine exposed only AVX2) bf16 is emulated and about 10x slower; ``amp=True``
turns it on where the hardware has it.  Entropy-parameter paths and likelihoods always
run in float32.  ``--hard-quantization`` is a final phase that rounds the latents as the
coder does (straight-through gradients) with the analysis side frozen.  The loop is
:class:`ncodec.training.TrainingLoop`: checkpoints every few minutes, at the end and on Ctrl-C or
SIGTERM, and a run restarted with the same ``--out`` resumes where it stopped.

Launched by ``torchrun`` (``torchrun --nproc_per_node N --no-python ncodec train image ...``) it
trains with torch's DistributedDataParallel (NCCL on CUDA, gloo on CPU): each process draws its
own crops (``--batch`` per process), rank 0 alone decides the schedule, writes checkpoints, logs
and exports, and at the end every rank checks it holds the same weights.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import InputError, UsageError
from ..latent import hard_quantizer
from ..training import RDOptimizer, TrainingLoop, export, run_folder
from .models import PRESETS, ImageModelConfig, build_model, context_slices

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
IMAGE_ARCHS = [name for name, config in PRESETS.items() if config.dims == 2]
ANALYSIS_SIDE = ("g_a", "h_a", "log_gain")   # what only the encoder runs: frozen by --hard-quantization


@dataclass
class TrainOptions:
    arch: str
    data: Path
    out: Path
    steps: int = 100_000
    batch: int = 8
    crop: int = 256
    lr: float = 1e-4
    device: str = "cpu"
    max_minutes: float = 0.0      # schedule length in wall time across resumes; 0 = use steps only
    stop_after_minutes: float = 0.0  # end this invocation early (checkpointed, resumable); 0 = no limit
    lr_drop_at: float = 0.85      # fraction of the run after which the lr is divided by 10
    checkpoint_seconds: float = 300.0
    seed: int = 0
    export: Path | None = None
    init: Path | None = None      # warm start: copy matching tensors from this weights file
    amp: bool | None = None       # bf16 autocast; default on for CUDA, off on CPU
    threads: int = 0              # CPU threads (0 = torch default)
    prior_lr_scale: float = 1.0   # lr multiplier for the learned densities (e.g. 10 after a warm start)
    prior_warmup: int = 0         # after a warm start: fit the densities alone for this many steps first
    quality_range: tuple[float, float] | None = None  # train only these qualities (1-based, inclusive)
    compile: bool = False         # run the forward pass through torch.compile (fixed crop and batch: one graph)
    checkerboard: bool = False    # slice model: add the checkerboard spatial context
    core_slices: int = 0          # slice model: slices after the first K see the core alone (0: a chain)
    reorder_channels: bool = False  # with init: latent channels in saliency order (ISCS); latent readers restart
    train_only: tuple[str, ...] = ()  # train only parameters under these module names; freeze the rest
    hard_quantization: bool = False   # round for rate and synthesis alike, analysis side frozen (final phase)


class CropSampler:
    """Holds decoded training images in RAM and draws random flipped crops from them."""

    def __init__(self, folder: Path, crop: int, rng: random.Random):
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no training images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
        self.images = []
        for path in tqdm(files, desc="loading images", unit="img", leave=False):
            with Image.open(path) as im:
                im = im.convert("RGB")
                short = min(im.size)
                if short < crop:
                    scale = crop / short
                    im = im.resize((math.ceil(im.width * scale), math.ceil(im.height * scale)), Image.BICUBIC)
                self.images.append(np.asarray(im))
        self.crop = crop
        self.rng = rng

    @property
    def values(self) -> int:
        """Pixels per crop (the rate term's denominator)."""
        return self.crop**2

    def batch(self, n: int) -> torch.Tensor:
        """``n`` crops, float (N, 3, crop, crop) in [0, 1]."""
        c = self.crop
        out = np.empty((n, c, c, 3), dtype=np.uint8)
        for i in range(n):
            img = self.images[self.rng.randrange(len(self.images))]
            top = self.rng.randrange(img.shape[0] - c + 1)
            left = self.rng.randrange(img.shape[1] - c + 1)
            patch = img[top:top + c, left:left + c]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[i] = patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


def sampler_for(config: ImageModelConfig, data: Path, crop: int, rng: random.Random):
    """Training data of a model: image crops, or audio segments of ``crop`` samples for a 1-D
    (audio) WaLLoC model."""
    if config.dims == 1:
        from ..walloc import AudioSegments

        return AudioSegments(data, crop, int(config.extra["sample_rate"]), rng)
    return CropSampler(data, crop, rng)


def rd_loss(model, out: dict, x: torch.Tensor, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-batch loss, mean bpp and mean PSNR of one forward pass."""
    pixels = x.shape[2] * x.shape[3]
    mse = (out["x_hat"].float() - x).pow(2).mean(dim=(1, 2, 3))
    bits = sum(-torch.log2(lik).sum(dim=tuple(range(1, lik.dim()))) for lik in out["likelihoods"])
    bpp = bits / pixels
    loss = (model.lambdas_for(quality) * 255**2 * mse + bpp).mean()
    psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()
    return loss, bpp.mean(), psnr


def fit_priors(model, sampler, steps: int, batch: int = 8, crops: int = 512, amp: bool = False) -> None:
    """Fit the learned densities alone to the latents of frozen transforms.

    After a warm start the transforms are already good but the densities are not; fitting
    them on cached latents of ``crops`` random crops costs a fraction of a training step each,
    so joint training then starts from a sensible rate term instead of wasting its first
    thousands of steps on it."""
    device = next(model.parameters()).device
    levels = model.config.levels
    latents = []
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        for _ in tqdm(range(crops // batch), desc="latents for prior fitting", unit="batch", leave=False):
            x = sampler.batch(batch).to(device).contiguous(memory_format=torch.channels_last)
            latents.append(model.g_a(x).float())
    y = torch.cat(latents)
    bottlenecks = list(model.priors) if model.config.per_level_priors else [model.z_prior]
    params = [p for b in bottlenecks for n, p in b.named_parameters() if not n.endswith("quantiles")]
    aux = [p for b in bottlenecks for n, p in b.named_parameters() if n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(params, lr=1e-2), torch.optim.Adam(aux, lr=1e-2)
    bar = tqdm(range(steps), desc="fitting priors", unit="step")
    for i in bar:
        idx = torch.randint(0, len(y), (batch,), device=device)
        quality = torch.randint(0, levels, (batch,), device=device).float()
        gain, _ = model.gains(quality)
        with torch.no_grad():
            target = y[idx] * gain
            if not model.config.per_level_priors:
                target = model.h_a(target)
        if model.config.per_level_priors:
            bits = sum(-torch.log2(model.priors[int(q)](t[None])[1]).sum() for q, t in zip(quality.tolist(), target))
        else:
            bits = -torch.log2(model.z_prior(target)[1]).sum()
        bpp = bits / (batch * sampler.values)
        for g in opt.param_groups:
            g["lr"] = 1e-2 if i < steps * 0.7 else 1e-3
        opt.zero_grad(set_to_none=True)
        bpp.backward()
        opt.step()
        aux_loss = sum(b.loss() for b in bottlenecks)
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.step()
        if i % 50 == 0:
            bar.set_postfix(bpp=round(bpp.item(), 4))
    bar.close()


class _Distributed:
    """Process-group plumbing for torchrun launches; a no-op in a single process."""

    def __init__(self, device_type: str):
        import torch.distributed as dist

        self.dist = dist
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1:
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        """The module to run forward passes through (DDP-wrapped when distributed)."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        # unused: the density quantiles (aux loss) and, for the factorized model, absent levels' priors
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def decide(self, lr: float, stop: bool, device) -> tuple[float, bool]:
        """Rank 0's learning rate and stop decision, for every rank (the schedule runs on wall time)."""
        if self.world == 1:
            return lr, stop
        t = torch.tensor([lr, float(stop)], dtype=torch.float64, device=device)
        self.dist.broadcast(t, 0)
        return t[0].item(), bool(t[1].item())

    def average_grads(self, params) -> None:
        """Average gradients that DDP does not synchronise (the aux loss's)."""
        if self.world > 1:
            for p in params:
                if p.grad is not None:
                    self.dist.all_reduce(p.grad)
                    p.grad /= self.world

    def check_in_sync(self, model) -> None:
        """Fail loudly if the ranks' weights drifted apart."""
        if self.world == 1:
            return
        total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().view(1)
        gathered = [torch.zeros_like(total) for _ in range(self.world)]
        self.dist.all_gather(gathered, total)
        if any(not torch.equal(g, total) for g in gathered):
            raise RuntimeError("distributed training: the ranks' weights differ")

    def close(self) -> None:
        if self.world > 1:
            self.dist.destroy_process_group()


def train(opts: TrainOptions) -> Path:
    """Train (or resume) a model; returns the checkpoint path.  Exports weights if asked."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    dist = _Distributed(torch.device(opts.device).type)
    torch.manual_seed(opts.seed + 1_000_003 * dist.rank)
    rng = random.Random(opts.seed + 1_000_003 * dist.rank)
    device = torch.device(f"cuda:{dist.local_rank}" if opts.device == "cuda" else opts.device)
    config = PRESETS[opts.arch]
    if opts.checkerboard:
        if config.arch != "slice":
            raise UsageError("--checkerboard applies to the slice model only")
        config = dataclasses.replace(config, checkerboard=True)
    if opts.core_slices or opts.reorder_channels:
        if config.arch != "slice":
            raise UsageError("--core-slices and --reorder-channels apply to the slice model only")
        if opts.reorder_channels and opts.init is None:
            raise UsageError("--reorder-channels reorders a trained model: give it with --init")
        config = dataclasses.replace(config, core_slices=opts.core_slices)
        try:
            context_slices(config)
        except ValueError as exc:
            raise UsageError(f"--core-slices: {exc}") from None
    levels = config.levels
    q_lo, q_hi = (1.0, float(levels)) if opts.quality_range is None else opts.quality_range
    if not 1 <= q_lo <= q_hi <= levels:
        raise UsageError(f"--quality-range must be LO <= HI within 1..{levels}")
    sampler = sampler_for(config, opts.data, opts.crop, rng)   # the data is read before anything is written
    ckpt, log = run_folder(opts.out, opts.checkpoint_seconds)
    state = ckpt.load(device)
    if state is not None and ImageModelConfig.from_dict(state["config"]) != config:
        raise UsageError(f"{ckpt.path} holds a different model ({state['config']['arch']}, checkerboard "
                         f"{state['config'].get('checkerboard', False)}); resume with the options that started it")
    model = build_model(config).to(device).to(memory_format=torch.channels_last)
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]   # the densities' bookkeeping
    named = {n: p for n, p in model.named_parameters() if not n.endswith(".quantiles")}
    if opts.train_only or opts.hard_quantization:   # freeze the rest: no gradient flows through it
        for n, p in named.items():
            module = n.split(".")[0]
            p.requires_grad_((not opts.train_only or module in opts.train_only)
                             and not (opts.hard_quantization and module in ANALYSIS_SIDE))
        named = {n: p for n, p in named.items() if p.requires_grad}
        if not named:
            raise UsageError(f"--train-only {','.join(opts.train_only)} names no trainable module of the "
                             f"{config.arch} model")
    optimizer = RDOptimizer([([p for n, p in named.items() if "prior" not in n], 1.0),
                             ([p for n, p in named.items() if "prior" in n], opts.prior_lr_scale)], aux_params, opts.lr)
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        if "optimizer" in state:  # weights-only checkpoints restart the optimizer state
            optimizer.load_state_dict(state)
        step, elapsed = state["step"], state["elapsed"]
        rng.seed(opts.seed + step + 1_000_003 * dist.rank)
        torch.manual_seed(opts.seed + step + 1_000_003 * dist.rank)
        print(f"resuming {opts.arch} from step {step}")
    elif opts.init is not None:
        from .weights import load_weights
        source_model = load_weights(opts.init).model
        stale = ()
        if opts.reorder_channels:
            from .saliency import LATENT_READERS, reorder_latent_channels, saliency_order
            reorder_latent_channels(source_model, saliency_order(source_model))
            stale = LATENT_READERS
        source, own = source_model.state_dict(), model.state_dict()
        same_arch = source_model.config.arch == config.arch   # densities carry over only to the same model
        copied = {k: v for k, v in source.items()
                  if k in own and own[k].shape == v.shape and (same_arch or not k.startswith("priors"))
                  and k.split(".")[0] not in stale}
        model.load_state_dict(copied, strict=False)
        print(f"warm start from {opts.init}: {len(copied)} tensors")

    amp = device.type == "cuda" if opts.amp is None else opts.amp
    if step == 0 and opts.init is None and hasattr(model, "init_from_data"):   # DDP copies rank 0's start
        model.init_from_data(sampler.batch(64).to(device))
    if step == 0 and opts.prior_warmup and dist.main:   # DDP then copies rank 0's weights to every rank
        fit_priors(model, sampler, opts.prior_warmup, batch=opts.batch, amp=amp)
    net = dist.wrap(model)
    if opts.compile:   # the optimizer and the checkpoints keep using ``model``: state dicts are unchanged
        net = torch.compile(net)
    quantizer = hard_quantizer if opts.hard_quantization else None   # None: the model's training quantizers

    def checkpoint() -> dict:
        return {"model": model.state_dict(), **optimizer.state_dict(), "step": loop.step, "elapsed": loop.elapsed,
                "config": config.to_dict()}

    model.train()
    loop = TrainingLoop(opts.steps, f"train {opts.arch}", checkpoint, ckpt, log, start=step, elapsed=elapsed,
                        max_minutes=opts.max_minutes, stop_after_minutes=opts.stop_after_minutes,
                        shown=("loss", "bpp", "psnr"), main=dist.main)
    with loop:
        while True:
            lr, stop = dist.decide(loop.lr(opts.lr, opts.lr_drop_at), loop.over(), device)
            if stop:
                break
            optimizer.set_lr(lr)
            x = sampler.batch(opts.batch).to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            if config.per_level_priors:   # one density per level: integer qualities only
                quality = torch.randint(math.ceil(q_lo) - 1, math.floor(q_hi), (opts.batch,), device=device).float()
            else:
                quality = q_lo - 1 + torch.rand(opts.batch, device=device) * (q_hi - q_lo)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = net(x, quality, quantizer)
            loss, bpp, psnr = rd_loss(model, out, x, quality)
            aux = optimizer.step(loss, model.aux_loss, dist.average_grads)
            loop.end_step(lambda: {"loss": round(loss.item(), 4), "bpp": round(bpp.item(), 4),
                                   "psnr": round(psnr.item(), 2), "aux": round(aux.item(), 1), "lr": lr})
    dist.check_in_sync(model)
    dist.close()
    if dist.main and opts.export is not None:
        from .weights import export_model
        export(export_model, model, opts.export, {"trained_steps": loop.step, "train_data": str(opts.data)})
    return ckpt.path


def add_arguments(p) -> None:
    """Options of ``ncodec train image``."""
    import argparse

    p.add_argument("--arch", choices=sorted(IMAGE_ARCHS), required=True)
    p.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, log.jsonl); rerun to resume")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--max-minutes", type=float, default=0.0, help="schedule length in wall time (lr drops at 85%%)")
    p.add_argument("--stop-after-minutes", type=float, default=0.0, help="end this invocation early (resumable)")
    p.add_argument("--export", default=None, help="write safetensors weights here at the end")
    p.add_argument("--init", default=None, help="warm start from a weights file")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA, off on CPU; worth it on CPUs with AMX or AVX512-BF16)")
    p.add_argument("--prior-lr-scale", type=float, default=1.0, help="lr multiplier for the learned densities")
    p.add_argument("--prior-warmup", type=int, default=0,
                   help="with --init: first fit the densities alone on frozen-transform latents for N steps")
    p.add_argument("--quality-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="train only qualities LO..HI (1-based), e.g. to fine-tune the high rates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward pass (about a minute to compile; 1.5x faster "
                        "steps measured on a 2-core AMX CPU with --amp)")
    p.add_argument("--checkerboard", action="store_true",
                   help="slice model: two-pass checkerboard spatial context in every slice (with --init from a "
                        "model without it, the new modules start as a no-op)")
    p.add_argument("--core-slices", type=int, default=0, metavar="K",
                   help="slice model: the slices after the first K depend on the hyperprior and those K alone, "
                        "so they decode in parallel (0, the default: each slice depends on all before it)")
    p.add_argument("--reorder-channels", action="store_true",
                   help="slice model, with --init: put the latent channels in parameter-saliency order (most "
                        "salient first, ISCS) before training; the slice context and residual-prediction "
                        "networks start again")
    p.add_argument("--train-only", default="", metavar="MODULES",
                   help="train only these top-level modules (comma-separated, e.g. spatial,fuse for a context "
                        "grafted onto a trained model); the rest stays frozen and no gradient flows through it")
    p.add_argument("--hard-quantization", action="store_true",
                   help="final fine-tuning phase: round the latents for the rate and the synthesis alike "
                        "(straight-through gradients), as the coder does, with the analysis side (g_a, h_a, "
                        "gains) frozen; the default trains the rate on additive noise")


def run(a) -> int:
    """``ncodec train image``: train or resume, then export if asked."""
    train(TrainOptions(arch=a.arch, data=Path(a.data), out=Path(a.out), steps=a.steps, batch=a.batch,
                       crop=a.crop, lr=a.lr, device=a.device or "cpu", max_minutes=a.max_minutes,
                       stop_after_minutes=a.stop_after_minutes, export=Path(a.export) if a.export else None,
                       init=Path(a.init) if a.init else None, threads=a.threads, seed=a.seed,
                       prior_lr_scale=a.prior_lr_scale, prior_warmup=a.prior_warmup, amp=a.amp,
                       quality_range=tuple(a.quality_range) if a.quality_range else None, compile=a.compile,
                       checkerboard=a.checkerboard, core_slices=a.core_slices, reorder_channels=a.reorder_channels,
                       train_only=tuple(m for m in a.train_only.split(",") if m),
                       hard_quantization=a.hard_quantization))
    return 0
