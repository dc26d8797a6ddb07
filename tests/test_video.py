"""Video codecs (NeRV, HNeRV): exact representation coding, fit quality, exact decode, resumable
and deterministic fitting, clear errors on bad input and damaged streams, no partial outputs."""
import signal
import struct
import zlib

import numpy as np
import pytest
import torch

from conftest import DATA
from ncodec import registry, training
from ncodec.container import Container
from ncodec.errors import CorruptStreamError, InputError, UsageError
from ncodec.eval.metrics import psnr
from ncodec.video import app
from ncodec.video.bitstream import decode_tensors, encode_tensors, quantize_tensor
from ncodec.video import fit
from ncodec.video import codec as video_codec
from ncodec.video.codec import DEFAULTS, NERV_STEM, PRESETS, VideoCodec, quality_params, read_tensors
from ncodec.video.io import Video, read_video, write_video
from ncodec.video.models import MAX_FRAME_MACS, OPTIONS, Decoder, choose_strides, solve_config

FAST = {"size": "12k", "epochs": 25, "progress": False}


def synthetic_clip(frames: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    """Smooth moving colour waves: easy to fit in a few epochs."""
    t, y, x, c = np.ogrid[:frames, :h, :w, :3]
    return (127 + 100 * np.sin(0.2 * x + 0.4 * t + c) * np.cos(0.15 * y + 0.1 * t)).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every test here, and the fits its module-scoped fixtures make, runs on one thread (a fit
    depends on the thread count); conftest restores the count when the module ends."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clip() -> Video:
    return Video(synthetic_clip(), 25)


@pytest.fixture(scope="module", params=["nerv", "hnerv"])
def coded(request, clip):
    """The codec and its :class:`~ncodec.video.codec.Encoding` of the clip."""
    codec = VideoCodec(request.param, "cpu")
    return codec, codec.encode_and_reconstruct(clip, **FAST)


def test_representation_round_trip_is_exact():
    torch.manual_seed(0)
    tensors = [torch.randn(16, 8, 3, 3) * 0.05, torch.randn(7) * 0.1, torch.zeros(4, 4),
               torch.distributions.Laplace(0.0, 0.02).sample((32, 12, 5, 5)), torch.randn(10, 16, 2, 4)]
    for bits in (8, 6, 3):
        coded = [quantize_tensor(x, bits, per_channel=x.dim() > 1 and i % 2 == 0) for i, x in enumerate(tensors)]
        meta, symbols = encode_tensors(coded)
        back = decode_tensors(meta, symbols, [q.shape for q in coded])
        for a, b in zip(coded, back):
            assert np.array_equal(a.symbols, b.symbols) and np.array_equal(a.steps, b.steps)
            assert a.model == b.model and torch.equal(a.dequantize(), b.dequantize())
        err = max(float((q.dequantize() - x).abs().max() / (q.steps.max() / 2)) for q, x in zip(coded, tensors))
        assert err <= 1.0001   # never more than half a step


def test_size_solver_meets_budget():
    assert choose_strides(640, 1280) == (5, 4, 4, 2, 2)    # HNeRV's Bunny setting
    for arch in ("nerv", "hnerv"):
        for budget in (300_000, 1_500_000):
            cfg = solve_config(arch, budget, 132, 640, 1280)
            assert abs(cfg.stored_params() - budget) / budget < 0.05   # one channel of fc_dim apart
    with pytest.raises(UsageError):
        solve_config("hnerv", 1000, 120, 144, 176)


def test_large_frames_get_a_decoder_within_the_frame_budget():
    """854x480 at quality 3 would cost HNeRV's shape about 4x the budget: the stages narrow faster
    at the same parameter count; a QCIF clip keeps HNeRV's shape, an explicit one is kept."""
    budget = quality_params(3, 50, 480, 854)
    wide = solve_config("nerv", budget, 50, 480, 854, reduce_permille=1200)
    capped = solve_config("nerv", budget, 50, 480, 854)
    assert capped.macs_per_frame() <= MAX_FRAME_MACS < wide.macs_per_frame()
    assert abs(capped.stored_params() - budget) / budget < 0.05
    qcif = solve_config("nerv", quality_params(3, 120, 144, 176), 120, 144, 176)
    assert (qcif.reduce_permille, qcif.ks_max) == (1200, 5) and (wide.reduce_permille, wide.ks_max) == (1200, 5)


@pytest.mark.parametrize("arch, options", [("nerv", {}), ("hnerv", {"residual": 1}), ("nerv", {"time_knots": 4})])
def test_decoder_multiply_adds_are_counted(arch, options):
    """macs_per_frame against the multiply-adds of every convolution and linear layer of a real pass."""
    cfg = solve_config(arch, 20_000, 4, 60, 90, **options)
    decoder, counted = Decoder(cfg), []

    def count(module, inputs, output):
        per_output = module.in_features if isinstance(module, torch.nn.Linear) else \
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        counted.append(output.numel() * per_output)

    for m in decoder.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    embeddings = torch.zeros(1, cfg.embed_dim, *cfg.grid) if arch == "hnerv" else None
    with torch.no_grad():
        decoder(torch.zeros(1, dtype=torch.long), embeddings)
    assert sum(counted) == cfg.macs_per_frame()


def test_bf16_synthesis_is_what_the_encoder_reconstructs(clip, monkeypatch):
    """Synthesis under bf16 (the default for large frames where bf16 is faster, forced here on any
    CPU) is what the encoder reports, decodes exactly, and stays within 0.1 dB of float32; the
    decode flag picks either precision for any stream."""
    encoded = VideoCodec("nerv", "cpu").encode_and_reconstruct(clip, **FAST)    # small frames: float32
    bf16 = VideoCodec("nerv", "cpu", "bfloat16").encode_and_reconstruct(clip, **FAST)
    assert bf16.data == encoded.data and not np.array_equal(bf16.reconstruction, encoded.reconstruction)
    assert abs(psnr(clip.frames, bf16.reconstruction) - psnr(clip.frames, encoded.reconstruction)) < 0.1
    monkeypatch.setattr(video_codec, "BF16_MIN_PIXELS", clip.frames.shape[1] * clip.frames.shape[2])
    monkeypatch.setattr(video_codec, "bf16_pays", lambda device: True)
    assert np.array_equal(VideoCodec("nerv", "cpu").decode(encoded.data).frames, bf16.reconstruction)
    container = Container.from_bytes(encoded.data)
    assert np.array_equal(app.decode(container, "cpu", "float32").frames, encoded.reconstruction)
    with pytest.raises(UsageError):
        VideoCodec("nerv", "cpu", "float16")


def test_decode_is_exact_and_above_floor(coded, clip):
    codec, encoded = coded
    decoded = codec.decode(encoded.data)
    assert decoded.frames.shape == clip.frames.shape and decoded.fps == clip.fps
    assert np.array_equal(decoded.frames, encoded.reconstruction)   # same device: bit-exact
    assert psnr(clip.frames, decoded.frames) > 21.0


def test_tensors_in_stream_match_settings(coded):
    codec, encoded = coded
    c = Container.from_bytes(encoded.data)
    tensors = read_tensors(c)
    stem_bits = DEFAULTS["bits"] - (codec.name == "nerv")          # NeRV's stem takes one bit fewer
    assert all(q.bits == (stem_bits if n == NERV_STEM else DEFAULTS["bits"]) for n, q in tensors.items())
    assert ("embeddings" in tensors) == (codec.name == "hnerv")
    assert sum(q.symbols.size for q in tensors.values()) == c.fields["params"] == encoded.params


def test_damaged_streams_raise(coded):
    codec, encoded = coded
    data = encoded.data
    with pytest.raises(CorruptStreamError):
        codec.decode(data[:-7])
    c = Container.from_bytes(data)
    bad_meta = Container(c.codec, c.model, c.weights_digest, c.fields,
                         {**c.sections, "meta": b"\xff" + c.sections["meta"][1:]})
    with pytest.raises(CorruptStreamError):
        codec.decode(bad_meta.to_bytes())
    bad_field = Container(c.codec, c.model, c.weights_digest, {**c.fields, "fc_dim": c.fields["fc_dim"] + 1},
                          c.sections)
    with pytest.raises(CorruptStreamError):
        codec.decode(bad_field.to_bytes())
    short = Container(c.codec, c.model, c.weights_digest, c.fields, {**c.sections, "meta": c.sections["meta"][:-1]})
    with pytest.raises(CorruptStreamError):
        codec.decode(short.to_bytes())
    body = bytearray(data[:-4])
    body[-5] ^= 0x10    # inside the symbols, checksum fixed: garbage symbols decode or fail cleanly
    try:
        codec.decode(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    except CorruptStreamError:
        pass


@pytest.mark.parametrize("arch, options", [("nerv", {"time_knots": 4, "local_knots": 3, "residual": 1}),
                                           ("hnerv", {"local_knots": 2, "affine_knots": 3, "residual": 1})])
def test_architecture_options_decode_exactly(clip, arch, options):
    """Temporal grids, local encodings, affine transforms and NeRV++ blocks: the stream records them, builds the same
    decoder from them (exact decode) and refuses them damaged; without them the fields, and so
    the architecture digest of older streams, are unchanged."""
    codec = VideoCodec(arch, "cpu")
    encoded = codec.encode_and_reconstruct(clip, **FAST, **options)
    c = Container.from_bytes(encoded.data)
    assert {k: c.fields[k] for k in options} == options
    assert np.array_equal(codec.decode(encoded.data).frames, encoded.reconstruction)
    assert psnr(clip.frames, encoded.reconstruction) > 21.0
    tensors = read_tensors(c)
    assert any(n.endswith(".local") for n in tensors) and any(".residual." in n for n in tensors)
    assert (NERV_STEM in tensors) == (arch == "hnerv") and ("time_grids.0" in tensors) == (arch == "nerv")
    for k in options:
        damaged = Container(c.codec, c.model, c.weights_digest, {**c.fields, k: 9999}, c.sections)
        with pytest.raises(CorruptStreamError):
            codec.decode(damaged.to_bytes())
    assert not set(options) & set(solve_config(arch, 12_000, 6, 32, 48).to_fields())
    assert ("blocks.0.affine" in tensors) == ("affine_knots" in options)
    for bad in ({"time_knots": 1}, {"local_knots": -2}, {"affine_knots": 1}, {"residual": 2}, {"time_knots": "many"}):
        with pytest.raises(UsageError):
            VideoCodec("nerv", "cpu").encode(clip, **FAST, **bad)
    with pytest.raises(UsageError):
        VideoCodec("hnerv", "cpu").encode(clip, **FAST, time_knots=4)
    assert [registry.option_dest(f, k) for f, k in app.ARCHITECTURE_OPTIONS] == list(OPTIONS)   # every one a flag


def test_quality_sets_the_model_size_and_the_preset_the_fit(clip):
    """Higher quality: a larger network and a larger stream.  The preset's epochs are what the
    stream records unless given; a quality below the smallest network gets the smallest."""
    codec = VideoCodec("hnerv", "cpu")
    big = Video(synthetic_clip(8, 96, 128), 25)
    low, high = (codec.encode_and_reconstruct(big, quality=q, epochs=2, qat_epochs=0, progress=False) for q in (1, 6))
    assert low.params == solve_config("hnerv", 1000, 8, 96, 128, smallest_if_below=True).stored_params()
    assert high.params > 4 * low.params and len(high.data) > 2 * len(low.data)
    for arch in ("hnerv", "nerv"):
        fast = Container.from_bytes(VideoCodec(arch, "cpu").encode(clip, quality=1, preset="fast", progress=False))
        preset = PRESETS["fast"]
        assert (fast.fields["epochs"], fast.fields["qat_epochs"]) == (preset.epochs(arch), preset.qat_epochs)
    assert PRESETS["fast"].epochs("nerv") > PRESETS["fast"].epochs("hnerv")   # NeRV epochs are cheaper


def test_fit_in_float32_where_bf16_does_not_pay(clip, monkeypatch):
    """Fitting runs under bf16 autocast only on CPUs with bf16 kernels; the float32 path (the
    others') fits as well and decodes exactly."""
    monkeypatch.setattr(fit, "bf16_pays", lambda device: False)
    codec = VideoCodec("hnerv", "cpu")
    encoded = codec.encode_and_reconstruct(clip, **FAST)
    assert np.array_equal(codec.decode(encoded.data).frames, encoded.reconstruction)
    assert psnr(clip.frames, encoded.reconstruction) > 21.0


def test_pruning_and_qat_options(clip):
    codec = VideoCodec("nerv", "cpu")
    encoded = codec.encode_and_reconstruct(clip, **{**FAST, "epochs": 8}, bits=6, prune=0.3, prune_epochs=2,
                                           qat_epochs=2)
    tensors = read_tensors(Container.from_bytes(encoded.data))
    weights = np.concatenate([q.symbols.ravel() for n, q in tensors.items() if q.symbols.ndim >= 2])
    assert np.mean(weights == 0) >= 0.299
    assert all(q.bits == (5 if n == NERV_STEM else 6) for n, q in tensors.items())
    assert np.array_equal(codec.decode(encoded.data).frames, encoded.reconstruction)


def test_fit_is_deterministic_and_resumable(clip, tmp_path, monkeypatch):
    src = tmp_path / "clip"
    write_video(src, clip)                       # a folder of PNG frames
    opts = {**FAST, "epochs": 4, "seed": 3}
    reference = VideoCodec("hnerv", "cpu").encode(read_video(src, fps=25), **opts)
    assert VideoCodec("hnerv", "cpu").encode(read_video(src, fps=25), **opts) == reference

    ckpt, dst = tmp_path / "fit.ckpt", tmp_path / "out.ncz"
    end_step = training.TrainingLoop.end_step

    def sigterm_after_two(loop, stats=None):
        end_step(loop, stats)
        if loop.step == 2:        # a counter, not a timer: the signal comes right after the second epoch
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(training.TrainingLoop, "end_step", sigterm_after_two)
    with pytest.raises(KeyboardInterrupt):   # SIGTERM interrupts as Ctrl-C does, after saving the checkpoint
        app.encode_file(src, dst, "hnerv", "cpu", False, {**opts, "checkpoint": str(ckpt), "fps": "25"})
    assert not dst.exists() and torch.load(ckpt, weights_only=True)["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no partial output or checkpoint
    monkeypatch.undo()
    app.encode_file(src, dst, "hnerv", "cpu", False, {**opts, "checkpoint": str(ckpt), "fps": "25"})
    assert dst.read_bytes() == reference
    with pytest.raises(UsageError):    # a checkpoint of other settings is refused, not silently reused
        app.encode_file(src, tmp_path / "x.ncz", "hnerv", "cpu", False,
                        {**opts, "epochs": 5, "checkpoint": str(ckpt), "fps": "25"})


def test_rollback_guard_returns_to_the_best_epoch(tmp_path):
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([w], lr=0.1)
    guard = fit.RollbackGuard([w], opt)

    def epoch(loss: float, g: fit.RollbackGuard = guard) -> bool:     # one update, then the epoch's loss
        w.grad = torch.ones(3)
        opt.step()
        return g.end_epoch(loss)

    assert not epoch(1.0) and not epoch(0.5)
    best, moments = w.detach().clone(), opt.state_dict()["state"][0]["exp_avg"].clone()
    assert not epoch(0.7)                                     # worse, but not a jump: kept
    assert epoch(0.9) and guard.lr_scale == 0.5               # 1.8x the best: back to it, half the rate
    assert torch.equal(w.detach(), best) and torch.equal(opt.state_dict()["state"][0]["exp_avg"], moments)
    assert epoch(float("nan")) and guard.lr_scale == 0.25 and torch.equal(w.detach(), best)

    torch.save(guard.state_dict(), tmp_path / "guard.pt")     # it travels in a checkpoint
    resumed = fit.RollbackGuard([w], opt)
    resumed.load_state_dict(torch.load(tmp_path / "guard.pt", weights_only=True))
    assert not epoch(0.6, resumed)
    assert resumed.finish(0.6) == 0.5 and torch.equal(w.detach(), best)   # the last epoch was worse
    assert resumed.finish(0.4) == 0.4


def test_file_round_trip_and_info(tmp_path, clip):
    src, dst = tmp_path / "in.y4m", tmp_path / "c.ncz"
    write_video(src, clip)
    report = app.encode_file(src, dst, "nerv", "cpu", False, {**FAST, "epochs": 3})
    assert report["bytes"] == dst.stat().st_size and "bpp" in report["summary"]
    c = Container.from_bytes(dst.read_bytes())
    info = app.describe(c, report["bytes"])
    assert info["frames"] == 6 and info["params"] == report["params"] and len(info["bits_per_tensor"]) > 3
    app.decode_file(c, tmp_path / "png", "cpu", False)
    frames = read_video(tmp_path / "png").frames
    assert np.array_equal(frames, VideoCodec("nerv", "cpu").decode(c).frames)
    app.decode_file(c, tmp_path / "out.mp4", "cpu", False)
    back = read_video(tmp_path / "out.mp4")
    assert back.shape == clip.shape and psnr(frames, back.frames) > 40    # lossless up to RGB<->YCbCr rounding


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError):
        Video(np.zeros((0, 16, 16, 3), np.uint8), 25)
    with pytest.raises(InputError):
        Video(np.zeros((2, 16, 16), np.uint8), 25)
    with pytest.raises(InputError):
        Video(np.zeros((1, 16, 16, 3), np.uint8), 0)
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(InputError):
        read_video(tmp_path / "a.txt")
    with pytest.raises(InputError):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        read_video(tmp_path / "empty")
    raw = tmp_path / "x.yuv"
    raw.write_bytes(bytes(1000))
    with pytest.raises(UsageError):
        read_video(raw)                                   # needs --frame-size
    with pytest.raises(InputError):
        read_video(raw, frame_size=(16, 16))              # not a whole number of frames
    with pytest.raises(InputError):
        read_video(raw, frame_size=(100_000, 100_000))    # absurd: refused before any allocation
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError):
        read_video(tmp_path / "fake.mp4")
    dst = tmp_path / "never.ncz"
    with pytest.raises(InputError):
        app.encode_file(tmp_path / "fake.mp4", dst, "hnerv", "cpu", False, {})
    tiny = Video(synthetic_clip(2), 25)
    for bad in ({"size": "banana"}, {"size": "500M"}, {"quality": 9}, {"quality": "high"},
                {"quality": 3, "size": "12k"}, {"preset": "instant"}):
        with pytest.raises(UsageError):
            VideoCodec("hnerv", "cpu").encode(tiny, **bad)
    assert not dst.exists()


def test_raw_i420_and_shared_clips():
    raw = DATA / "video" / "raw_yuv420" / "foreman_cif_352x288_i420_2frames.yuv"
    mp4 = DATA / "video" / "mp4" / "carphone_qcif_176x144_120f.mp4"
    if not raw.exists() or not mp4.exists():
        pytest.skip("shared video data is absent")
    v = read_video(raw, frame_size=(352, 288), fps="30")
    assert v.shape == (2, 288, 352) and v.fps == 30
    v = read_video(mp4, max_frames=10, crop=(128, 96))
    assert v.shape == (10, 96, 128) and abs(float(v.fps) - 29.97) < 0.01


def test_cli_encode_info_decode(tmp_path, capsys):
    from ncodec.cli import main

    src = tmp_path / "clip.y4m"
    write_video(src, Video(synthetic_clip(), 25))
    assert main(["encode", str(src), str(tmp_path / "c.ncz"), "--codec", "nerv", "--size", "12k", "--epochs", "2",
                 "--bits", "7", "--seed", "1"]) == 0
    assert main(["info", str(tmp_path / "c.ncz")]) == 0
    out = capsys.readouterr().out
    assert "bits_per_tensor" in out and "bpp" in out and "epochs" in out
    assert main(["decode", str(tmp_path / "c.ncz"), str(tmp_path / "d.y4m")]) == 0
    assert read_video(tmp_path / "d.y4m").shape == (6, 32, 48)
    assert main(["encode", str(src), str(tmp_path / "e.ncz"), "--size", "0.75Q"]) == 2          # UsageError
    assert main(["encode", str(tmp_path / "no.mp4"), str(tmp_path / "e.ncz")]) == 3             # InputError
    assert not (tmp_path / "e.ncz").exists()
