"""`ncodec train image`: a few real steps, resume, export, and two-process DDP on gloo."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import ncodec
from ncodec.cli import main
from conftest import natural_image, terminate_training


def make_data(folder: Path) -> Path:
    folder.mkdir()
    Image.fromarray(natural_image(120, 160)).save(folder / "a.png")
    Image.fromarray(natural_image(50, 70)).save(folder / "small.jpg")   # smaller than the crop: upscaled
    return folder


def train_args(data, out, steps):
    return ["train", "image", "--arch", "hyperprior", "--data", str(data), "--out", str(out), "--steps", str(steps),
            "--batch", "1", "--crop", "64", "--threads", "1"]


def test_train_resume_export(tmp_path):
    data = make_data(tmp_path / "data")
    out = tmp_path / "run"
    assert main(train_args(data, out, 2)) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    weights = tmp_path / "w.safetensors"
    assert main(train_args(data, out, 3) + ["--export", str(weights)]) == 0     # resumes at step 2
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    from ncodec.fileio import process_umask
    assert weights.stat().st_mode & 0o777 == 0o666 & ~process_umask()   # not safetensors' 0600
    codec = ncodec.load_codec("hyperprior", "cpu", weights=weights)
    img = natural_image(32, 48)
    assert codec.decode(codec.encode(img, quality=2)).shape == img.shape


def test_distributed_training_on_gloo(tmp_path):
    """torchrun with two CPU processes: both ranks step together and end with identical weights
    (train() all-gathers a checksum and fails otherwise); rank 0 alone writes the checkpoint."""
    data = make_data(tmp_path / "data")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ncodec.cli",
           *train_args(data, out, 2)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)   # only against hanging
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2


def test_fine_tune_keeps_densities_and_trains_only_the_quality_band(tmp_path):
    """--init from a shipped model of the same architecture copies its densities too, and
    --quality-range trains only that band: a level outside it keeps its density and gains."""
    from ncodec.api import assets_dir
    from ncodec.image.weights import load_weights

    data = make_data(tmp_path / "data")
    shipped = load_weights(assets_dir() / "image-factorized.safetensors").model.state_dict()
    weights = tmp_path / "w.safetensors"
    args = ["train", "image", "--arch", "factorized", "--data", str(data), "--out", str(tmp_path / "run"),
            "--steps", "2", "--batch", "1", "--crop", "64", "--threads", "1",
            "--init", str(assets_dir() / "image-factorized.safetensors"), "--export", str(weights)]
    assert main(args + ["--quality-range", "3", "3"]) == 0
    tuned = load_weights(weights).model.state_dict()
    for name in ("priors.0.matrices.0", "priors.5.biases.2", "log_gain"):
        assert name in tuned
    assert torch.equal(tuned["priors.0.matrices.0"], shipped["priors.0.matrices.0"])
    assert not torch.equal(tuned["priors.2.matrices.0"], shipped["priors.2.matrices.0"])
    assert torch.equal(tuned["log_gain"][0], shipped["log_gain"][0])
    assert not torch.equal(tuned["log_gain"][2], shipped["log_gain"][2])
    assert main(args[:8] + ["--out", str(tmp_path / "bad"), "--quality-range", "5", "2"]) == 2


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_takes_the_eager_steps(tmp_path):
    """--compile trains the same model as eager training: from the same seed (and, for this check,
    eager's random numbers in the compiled graph) the same weights after three steps, under the
    same checkpoint keys (so a run resumes either way)."""
    import torch._inductor.config

    data = make_data(tmp_path / "data")
    runs = {}
    with torch._inductor.config.patch(fallback_random=True):    # (monkeypatch's undo breaks inductor's config)
        for name, extra in (("eager", []), ("compiled", ["--compile"])):
            assert main(train_args(data, tmp_path / name, 3) + extra) == 0
            runs[name] = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"]
    assert runs["compiled"].keys() == runs["eager"].keys()
    for key, eager in runs["eager"].items():
        torch.testing.assert_close(runs["compiled"][key], eager, rtol=1e-3, atol=1e-5, msg=key)


def test_sigterm_checkpoints_before_exiting(tmp_path):
    """A training run ended by SIGTERM (as a session ending does) checkpoints first, as on Ctrl-C,
    instead of losing the steps since the last periodic checkpoint."""
    data = make_data(tmp_path / "data")
    assert terminate_training(train_args(data, tmp_path / "run", 100_000), tmp_path / "run") > 0



def test_checkerboard_graft_trains_only_the_named_modules(tmp_path):
    """--checkerboard with --init from a slice model without it copies every tensor of the file, and
    --train-only spatial,fuse trains the grafted context alone: the fusion layers leave the zero they
    start at while every other tensor keeps its value."""
    from ncodec.image.models import PRESETS, build_model
    from ncodec.image.weights import export_model, load_weights

    data = make_data(tmp_path / "data")
    torch.manual_seed(0)
    source = tmp_path / "plain.safetensors"
    export_model(build_model(PRESETS["slice"]), source)
    args = ["train", "image", "--arch", "slice", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2",
            "--batch", "1", "--crop", "64", "--threads", "1", "--init", str(source), "--checkerboard"]
    weights = tmp_path / "cb.safetensors"   # its 1x1 kernels, trained channels_last, export with plain strides
    assert main(args + ["--train-only", "spatial,fuse", "--export", str(weights)]) == 0
    assert load_weights(weights).model.config.checkerboard
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["config"]["checkerboard"]
    before = load_weights(source).model.state_dict()
    assert state["model"]["fuse.4.2.weight"].abs().max() > 0
    for key in ("g_a.0.weight", "context.4.4.bias", "lrp.0.0.weight", "log_gain"):
        assert torch.equal(state["model"][key], before[key]), key
    assert main([a for a in args if a != "--checkerboard"]) == 2   # resuming it as another model: a clear error
    assert main(args[:6] + ["--out", str(tmp_path / "bad"), "--train-only", "nothing"]) == 2
    assert main(args[:3] + ["hyperprior"] + args[4:6] + ["--out", str(tmp_path / "bad2"), "--checkerboard"]) == 2


def test_hard_quantization_codes_what_the_coder_codes_and_freezes_the_analysis_side(tmp_path):
    """--hard-quantization trains on the rounded latents the coder sees (in training mode the model
    then gives eval mode's likelihoods and reconstruction, with gradients reaching the entropy
    parameters) and leaves the analysis side (g_a, h_a, log_gain) as it was."""
    from ncodec.api import assets_dir
    from ncodec.latent import hard_quantizer
    from ncodec.image.weights import export_model, load_weights

    model = load_weights(assets_dir() / "image-hyperprior.safetensors").model
    x = torch.from_numpy(natural_image(64, 64)).permute(2, 0, 1)[None].float() / 255
    quality = torch.tensor([2.0])
    with torch.no_grad():
        rounded = model.eval()(x, quality)
    hard = model.train()(x, quality, hard_quantizer)
    torch.testing.assert_close(hard["x_hat"], rounded["x_hat"])
    for lik_hard, lik_rounded in zip(hard["likelihoods"], rounded["likelihoods"]):
        torch.testing.assert_close(lik_hard, lik_rounded)
    hard["likelihoods"][0].log().sum().backward()
    assert model.h_s[-1].weight.grad.abs().max() > 0

    data = make_data(tmp_path / "data")
    source = tmp_path / "init.safetensors"
    export_model(model, source)
    assert main(train_args(data, tmp_path / "run", 2) + ["--init", str(source), "--hard-quantization"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    before = model.state_dict()
    for key in ("g_a.0.weight", "h_a.0.weight", "log_gain"):
        assert torch.equal(state[key], before[key]), key
    for key in ("g_s.0.weight", "h_s.4.weight", "log_inv_gain"):
        assert not torch.equal(state[key], before[key]), key


def test_reorder_channels_permutes_the_latent_and_restarts_its_readers(tmp_path):
    """--reorder-channels --core-slices 3 --init: the exported model's transforms and gains are the
    source's with the latent channels in saliency order (same reconstruction), the aux slices' context
    networks read the core alone, and the networks tied to the old order start again."""
    from ncodec.image.models import PRESETS, build_model
    from ncodec.image.saliency import saliency_order
    from ncodec.image.weights import export_model, load_weights

    data = make_data(tmp_path / "data")
    torch.manual_seed(0)
    source = tmp_path / "plain.safetensors"
    export_model(build_model(PRESETS["slice"]), source)
    args = ["train", "image", "--arch", "slice", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1",
            "--batch", "1", "--crop", "64", "--threads", "1", "--init", str(source), "--core-slices", "3",
            "--reorder-channels", "--train-only", "context"]
    weights = tmp_path / "iscs.safetensors"
    assert main(args + ["--export", str(weights)]) == 0
    before, after = load_weights(source).model, load_weights(weights).model
    order = saliency_order(before)
    assert not torch.equal(order, torch.arange(before.config.M))
    assert after.config.core_slices == 3
    assert torch.equal(after.g_a[-1].weight, before.g_a[-1].weight[order])
    assert torch.equal(after.g_s[0].weight, before.g_s[0].weight[order])
    assert torch.equal(after.log_gain, before.log_gain[:, order])
    assert torch.equal(after.h_a[0].weight, before.h_a[0].weight[:, order])
    core = after.config.hyper_channels + sum(after.config.slices[:3])
    assert after.context[3][0].in_channels == after.context[4][0].in_channels == core
    assert not torch.equal(after.lrp[0][0].weight, before.lrp[0][0].weight)     # restarted, not trained
    assert main(args[:6] + ["--out", str(tmp_path / "bad"), "--core-slices", "5"]) == 2
    from ncodec.errors import ModelMismatchError
    from ncodec.image.weights import FORMAT
    from ncodec.weightsfile import read_weights, write_weights
    stored = read_weights(weights, FORMAT, "image model")
    write_weights(tmp_path / "bad.safetensors", stored.tensors, {**stored.config, "core_slices": 9}, FORMAT)
    with pytest.raises(ModelMismatchError, match="core_slices"):
        load_weights(tmp_path / "bad.safetensors")
    assert main([a for a in args if a not in ("--init", str(source))][:-2] + ["--out", str(tmp_path / "bad2")]) == 2
