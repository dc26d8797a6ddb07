"""The overfitted image codec: exact latent coding in wavefronts, round trips, resumable fitting."""
import numpy as np
import pytest
import torch

import ncodec
from conftest import natural_image
from ncodec.container import Container
from ncodec.entropy import ACT_FRAC, SymbolDecoder, SymbolEncoder
from ncodec.entropy.tables import laplace_tables
from ncodec.errors import CorruptStreamError, UsageError
from ncodec.image.overfit import fit as fitting
from ncodec.image.overfit.arm import MEAN_BINS, LatentCoder, Wavefront, latent_tables, located_rows
from ncodec.image.overfit.codec import OverfitCodec
from ncodec.image.overfit.model import OverfitModel, grid_shapes

TINY = fitting.Preset(iterations=60, candidates=2, warmup=5)
SHAPES = [(1, 1), (2, 9), (37, 53), (64, 33)]


def _model(h, w, seed=0):
    torch.manual_seed(seed)
    m = OverfitModel(h, w)
    for g in m.grids:
        g.data.normal_(0, 3)
    return m


@pytest.mark.parametrize("h,w", SHAPES)
def test_wavefront_contexts_are_causal_and_match_training(h, w):
    m = _model(h, w)
    latents = [g.detach().round() for g in m.grids]
    wavefront = Wavefront(grid_shapes(h, w, m.config.levels))
    flat = np.concatenate([g.numpy().ravel() for g in latents] + [np.zeros(1)])
    training_rows = np.concatenate([m.arm_rows(latents, k).numpy() for k in range(len(latents))])
    context = wavefront.context(np.arange(wavefront.size))
    np.testing.assert_array_equal(flat[context], training_rows)
    step = np.full(wavefront.size + 1, -1)
    for i, batch in enumerate(wavefront.batches()):
        step[batch] = i
    assert (step[:-1] >= 0).all()
    assert (step[context] < step[:-1, None]).all()   # every context is decoded before


@pytest.mark.parametrize("h,w", SHAPES)
def test_latents_round_trip_exactly(h, w):
    m = _model(h, w, seed=1)
    rng = np.random.default_rng(0)
    grids = [np.round(rng.laplace(0, 3, size=s)).astype(np.int64) for s in grid_shapes(h, w, m.config.levels)]
    grids[0].flat[0] = 5000           # far outside any table row: an escaped value
    coder = LatentCoder(m.arm, grid_shapes(h, w, m.config.levels))
    enc = SymbolEncoder()
    coder.encode(grids, enc)
    data = enc.finish()
    decoded = LatentCoder(m.arm, grid_shapes(h, w, m.config.levels)).decode(SymbolDecoder(data))
    assert all((a == b).all() for a, b in zip(decoded, grids))
    assert abs(8 * len(data) - coder.bits(grids)) < 0.02 * coder.bits(grids) + 128


def test_located_rows_pick_the_mean_bin_and_scale():
    _, thresholds = latent_tables()
    one = 1 << ACT_FRAC
    mean = np.array([0, 1, one - 1, one, -1, -one, -one - 1, 5 * one + one // 2, -(1 << 24)], dtype=np.float64)
    log_scale = np.full(mean.shape, thresholds[0] - 1)
    rows, shifts = located_rows(mean, log_scale, thresholds)
    np.testing.assert_array_equal(shifts, np.floor(mean / one))
    np.testing.assert_array_equal(rows, np.floor((mean / one - shifts) * MEAN_BINS))
    rows, _ = located_rows(mean[:1], np.array([thresholds[3]]), thresholds)
    assert rows[0] == 4 * MEAN_BINS


def test_laplace_rows_are_distributions():
    tables = laplace_tables(np.array([0.05, 1.0, 20.0]), mean_bins=4)
    sums = tables.pmfs.sum(axis=1)
    assert np.allclose(sums, 1.0, atol=1e-6)
    assert tables.count == 12


@pytest.fixture(scope="module")
def coded():
    img = natural_image(24, 40)
    data = OverfitCodec().encode(img, quality=4, preset=TINY, seed=3)
    return img, data


def test_round_trip_and_quality_floor(coded):
    img, data = coded
    out = ncodec.decode(data, device="cpu")
    assert out.shape == img.shape and out.dtype == np.uint8
    psnr = 10 * np.log10(255**2 / np.mean((out.astype(float) - img) ** 2))
    assert psnr > 22, psnr
    assert np.array_equal(out, ncodec.decode(data, device="cpu"))
    info = ncodec.info(data)
    assert info["model"] == "overfit" and info["bpp"] == pytest.approx(8 * len(data) / img[..., 0].size, rel=1e-3)


def test_low_qualities_fit_a_narrower_arm(coded):
    img, data = coded
    low = OverfitCodec().encode(img, quality=2, preset=TINY, seed=3)
    arm_hidden = [Container.from_bytes(d).fields["cfg"][2] for d in (low, data)]
    assert arm_hidden == [8, 16]
    out = ncodec.decode(low, device="cpu")
    assert out.shape == img.shape and 10 * np.log10(255**2 / np.mean((out.astype(float) - img) ** 2)) > 20


def test_decoding_does_not_depend_on_threads(coded):
    _, data = coded
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ncodec.decode(data, device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, ncodec.decode(data, device="cpu"))


def test_grayscale_and_alpha():
    rgb = natural_image(16, 16)
    gray = rgb[:, :, 0]
    out = ncodec.decode(ncodec.encode(gray, codec="overfit", preset=TINY), device="cpu")
    assert out.shape == (16, 16, 1)
    rgba = np.concatenate([rgb, np.arange(256, dtype=np.uint8).reshape(16, 16, 1)], axis=2)
    out = ncodec.decode(ncodec.encode(rgba, codec="overfit", preset=TINY), device="cpu")
    assert np.array_equal(out[:, :, 3], rgba[:, :, 3])


def test_resumed_fit_repeats_an_uninterrupted_one(tmp_path, monkeypatch):
    x = torch.from_numpy(natural_image(16, 24)).permute(2, 0, 1)[None].float() / 255
    preset = fitting.Preset(iterations=30, candidates=1, warmup=4)
    whole = fitting.fit(x, 0.01, preset, seed=5, progress=False)
    ckpt = tmp_path / "fit.pt"
    real_over = fitting.TrainingLoop.over
    monkeypatch.setattr(fitting.TrainingLoop, "over", lambda loop: loop.step >= 17 or real_over(loop))
    fitting.fit(x, 0.01, preset, seed=5, checkpoint=ckpt, progress=False)     # stops after 17 steps
    assert torch.load(ckpt, weights_only=True)["step"] == 17
    monkeypatch.setattr(fitting.TrainingLoop, "over", real_over)
    resumed = fitting.fit(x, 0.01, preset, seed=5, checkpoint=ckpt, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(UsageError, match="another image or other settings"):
        fitting.fit(x, 0.02, preset, seed=5, checkpoint=ckpt, progress=False)


def test_last_phase_fits_the_networks_to_fixed_latents(monkeypatch):
    """In the last phase the latents are the rounded values the stream will carry and stay put;
    the networks go on learning."""
    x = torch.from_numpy(natural_image(16, 24)).permute(2, 0, 1)[None].float() / 255
    seen = []
    real_loss = fitting.rd_loss

    def spy(model, *args):
        progress, hard_from = args[2], args[3]
        if progress >= hard_from:
            seen.append(([g.detach().clone() for g in model.grids], model.arm[0].weight.detach().clone()))
        return real_loss(model, *args)

    monkeypatch.setattr(fitting, "rd_loss", spy)
    model = fitting.fit(x, 0.01, fitting.Preset(iterations=20, candidates=1, warmup=2, hard_fraction=0.5),
                        progress=False)
    assert len(seen) == 10
    first_grids, first_arm = seen[0]
    for grids in [s[0] for s in seen[1:]] + [list(model.grids)]:
        assert all(torch.equal(a, b) for a, b in zip(first_grids, grids))
    assert not torch.equal(first_arm, model.arm[0].weight)


def test_bad_settings_and_streams(coded):
    img, data = coded
    codec = OverfitCodec()
    with pytest.raises(UsageError, match="preset"):
        codec.encode(img, preset="fastest")
    with pytest.raises(UsageError, match="quality"):
        codec.encode(img, quality=7)
    from ncodec.container import Container

    c = Container.from_bytes(data)
    c.fields["cfg"] = [1, 99, 16, 16]
    with pytest.raises(CorruptStreamError, match="cannot build"):
        ncodec.decode(c.to_bytes(), device="cpu")
    with pytest.raises(CorruptStreamError):
        ncodec.decode(data[:-20], device="cpu")      # a truncated file


def test_cluster_encodes_a_folder_to_the_same_bytes(tmp_path):
    distributed = pytest.importorskip("distributed")
    from functools import partial

    from PIL import Image

    from ncodec.cli import _batch, _encode_task

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(natural_image(12, 16 + 4 * i)).save(photos / f"{i}.png")
    task = partial(_encode_task, options={"codec": "overfit", "quality": 2, "preset": TINY, "seed": 1},
                   into_folder=True)
    assert _batch(photos, tmp_path / "local", lambda f: True, task, None) == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert _batch(photos, tmp_path / "remote", lambda f: True, task, None, cluster.scheduler_address) == 0
    for i in range(2):
        assert (tmp_path / "local" / f"{i}.ncz").read_bytes() == (tmp_path / "remote" / f"{i}.ncz").read_bytes()


def test_eval_sweep_resumes_its_fits_from_checkpoints(tmp_path, monkeypatch):
    """``ncodec eval image --checkpoint-dir``: one checkpoint per image, codec and quality; a second
    sweep takes the finished fits from them (no fitting step runs) and measures the same streams."""
    import json

    from PIL import Image

    from ncodec.eval.rd_image import run_image_eval

    monkeypatch.setitem(fitting.PRESETS, "fast", TINY)
    photos, ckpt = tmp_path / "photos", tmp_path / "ckpt"
    photos.mkdir()
    Image.fromarray(natural_image(12, 16)).save(photos / "p.png")
    sweep = dict(anchor=None, workers=0, progress=False, qualities={"ncodec:overfit+fast": [2]}, checkpoint_dir=ckpt)
    run_image_eval(photos, ["ncodec:overfit+fast"], tmp_path / "a", per_image=True, **sweep)
    assert [p.name for p in ckpt.iterdir()] == ["p-ncodec-overfit+fast-q2.pt"]

    def no_fitting(*args):
        raise AssertionError("a finished fit was run again")

    monkeypatch.setattr(fitting, "_step", no_fitting)
    run_image_eval(photos, ["ncodec:overfit+fast"], tmp_path / "b", per_image=True, **sweep)
    first, second = (json.loads((tmp_path / d / "ncodec-overfit+fast.json").read_text())["per_image"][0] for d in "ab")
    assert first["bytes"] == second["bytes"] and first["psnr-rgb"] == second["psnr-rgb"]
    with pytest.raises(ValueError, match="cluster"):
        run_image_eval(photos, ["ncodec:overfit+fast"], tmp_path / "c", cluster="tcp://127.0.0.1:9", **sweep)


def test_unreachable_cluster_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from ncodec import cluster

    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    with pytest.raises(UsageError, match="cannot reach a Dask scheduler"):
        with cluster.cluster_executor("tcp://127.0.0.1:9"):
            pass


def test_command_line_options_reach_the_codec(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from ncodec.cli import main
    from ncodec.image.overfit import codec as overfit_codec

    src = tmp_path / "a.png"
    Image.fromarray(natural_image(8, 8)).save(src)
    seen = {}

    def fake_encode(self, image, quality=None, **options):
        seen.update(options, quality=quality)
        return OverfitCodec().pack(OverfitModel(8, 8), [8, 8, 8, 8], quality, image, 3).to_bytes()

    monkeypatch.setattr(overfit_codec.OverfitCodec, "encode", fake_encode)
    out = tmp_path / "a.ncz"
    assert main(["encode", str(src), str(out), "--codec", "overfit", "--preset", "medium", "--seed", "4",
                 "--checkpoint", str(tmp_path / "fit.pt"), "-q", "2.5"]) == 0
    assert seen == {"preset": "medium", "seed": 4, "checkpoint": str(tmp_path / "fit.pt"), "quality": 2.5,
                    "progress": True}
    assert main(["decode", str(out), str(tmp_path / "a2.png")]) == 0
    assert main(["encode", str(src), str(tmp_path / "b.ncz"), "--codec", "overfit", "--refine", "10"]) == 2
    assert main(["encode", str(src), str(tmp_path / "c.ncz"), "--preset", "fast"]) == 2
    assert main(["encode", str(src), str(tmp_path / "d.ncz"), "--cluster", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "does not take --refine" in err and "--codec overfit or lossless" in err and "single file" in err


def test_size_limit(monkeypatch):
    from ncodec.errors import InputError
    from ncodec.image.overfit import codec as overfit_codec

    monkeypatch.setattr(overfit_codec, "MAX_PIXELS", 100)
    with pytest.raises(InputError, match="up to 100 pixels"):
        OverfitCodec().encode(natural_image(10, 11), preset=TINY)
