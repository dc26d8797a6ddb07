"""The audio codec: exact symbol round trips, quality and rate on real clips, formats, chunk seams,
file I/O and the errors users get for bad input or damaged streams."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ncodec
from ncodec.container import Container
from ncodec.errors import CorruptStreamError, InputError, ModelMismatchError, OutputError, UsageError
from ncodec.eval.audio_metrics import mel_distance, si_sdr

from conftest import DATA, terminate_training

SPEECH = DATA / "audio" / "speech" / "vctk_16k" / "p232_003.wav"          # held out from training
MUSIC = DATA / "audio" / "music" / "encodec" / "encodec_test_48k.wav"     # held out from training


@pytest.fixture(scope="module")
def codec():
    from ncodec.audio import app
    from ncodec.api import assets_dir

    if not (assets_dir() / app.WEIGHT_FILES["mdct"]).exists():
        pytest.skip("assets/audio-mdct.safetensors is missing")
    return app.load_codec("mdct", "cpu")


def _clip(path, seconds: float, start: float = 1.0):
    from ncodec.audio.io import read_audio

    if not path.exists():
        pytest.skip(f"{path} not found (../shared/data is absent)")
    x, rate = read_audio(path)
    return np.ascontiguousarray(x[:, int(start * rate):int((start + seconds) * rate)]), rate


@pytest.fixture(scope="module")
def speech():
    return _clip(SPEECH, 3.0)


@pytest.fixture(scope="module")
def music():
    return _clip(MUSIC, 3.0)


def test_mdct_reconstructs_exactly():
    from ncodec.audio.mdct import frame_count, imdct, mdct

    hop, n = 960, 5000
    x = torch.randn(2, n, dtype=torch.float64)
    t = frame_count(n, hop)
    padded = torch.nn.functional.pad(x, (hop, (t + 1) * hop - n - hop))
    y = imdct(mdct(padded, hop), hop)[:, hop:hop + n]
    assert torch.allclose(y, x, atol=1e-9)
    assert torch.allclose(mdct(padded, hop).pow(2).sum(), padded.pow(2).sum(), rtol=1e-9)   # orthonormal


def test_latent_symbols_round_trip_exactly(codec, music):
    """Symbols, log-scales, band fill levels and frame boosts decode to exactly what the encoder coded."""
    from ncodec.audio import bandfill
    from ncodec.audio.latent import zero_bin_variance
    from ncodec.audio.mdct import mdct
    from ncodec.entropy import from_fixed

    x, rate = music
    from ncodec.audio.io import Resampler

    r = Resampler(2, rate, codec.rate)
    m = np.concatenate([r(x), r(None)], axis=1)[:, : 41 * codec.hop]
    coefs = mdct(torch.from_numpy(m), codec.hop)[..., :40]
    y = coefs * codec.model.gains(torch.tensor([5.0]))
    boosts = np.arange(40) % 11
    sections, symbols, scales, _ = codec.latent.compress(y, boosts, bandfill.CURRENT, codec.hop)
    decoded, decoded_scales, fraction, decoded_boosts = codec.latent.decompress(sections, tuple(y.shape),
                                                                                bandfill.CURRENT, codec.hop)
    assert np.array_equal(decoded, symbols) and torch.equal(decoded_scales, scales)
    assert np.array_equal(decoded_boosts, boosts)
    assert np.abs(symbols).max() > 0
    levels = bandfill.measure_levels(y, symbols, zero_bin_variance(from_fixed(scales, torch.float64)),
                                     bandfill.CURRENT)
    assert len(np.unique(levels)) > 2                                    # the levels carry information
    zeros = torch.from_numpy(symbols == 0)        # the fractions that fill something round trip exactly
    assert torch.equal(fraction[zeros], bandfill.fill_fraction(levels, y.shape[1], bandfill.CURRENT)[zeros])


@pytest.mark.parametrize("mode", [2, 3])
def test_band_fill_levels_round_trip_in_every_layout(mode):
    """Any levels in range, on any pattern of cells that carry one (the others are never read),
    decode exactly in both layouts; the bands partition the bins."""
    from ncodec.audio import bandfill
    from ncodec.entropy import SymbolDecoder, SymbolEncoder

    rng = np.random.default_rng(mode)
    bands = len(bandfill.MEL_EDGES) - 1
    k_min, k_max = bandfill.K_MIN, bandfill.K_MAX
    levels = rng.integers(k_min, k_max + 1, size=(2, bands, 30))
    levels[:, :, 10:20] = np.clip(levels[:, :, 10:11] + rng.integers(-1, 2, size=(2, bands, 10)), k_min, k_max)
    levels[:, -3:, 20:] = k_min                                       # bands the input does not have
    cells = rng.random((2, bands, 30)) < 0.8
    enc = SymbolEncoder()
    bits = bandfill.encode_levels(enc, levels, cells, mode)
    data = enc.finish()
    decoded = bandfill.decode_levels(SymbolDecoder(data), cells, mode)
    assert np.array_equal(decoded[cells], levels[cells])
    assert abs(8 * len(data) - bits) < 0.05 * bits + 64
    for bins in (240, 480, 960):
        edges = bandfill.band_edges(bins)
        assert edges[0] == 0 and edges[-1] == bins and all(np.diff(edges) > 0)


def test_speech_quality_and_rate(codec, speech):
    x, rate = speech
    for kbps in (12, 24):
        data = codec.encode(x, rate, kbps=kbps)
        real = 8 * len(data) / (x.shape[1] / rate) / 1000
        assert abs(real / kbps - 1) < 0.10, (kbps, real)
        out = codec.decode(data)
        assert out.sample_rate == rate and out.samples.shape == x.shape
        if kbps == 24:
            assert si_sdr(x, out.samples) > 20
            assert mel_distance(x, out.samples, rate) < 0.25


def test_music_stereo_rate_and_quality(codec, music):
    x, rate = music
    data = codec.encode(x, rate, kbps=24)
    assert abs(8 * len(data) / 3.0 / 1000 / 24 - 1) < 0.10
    out = codec.decode(data)
    assert out.samples.shape == x.shape and out.sample_rate == 48000
    assert si_sdr(x, out.samples) > 12


def test_noise_fill_improves_mel_distance_and_decodes_the_same(codec, speech):
    """The zero-bin noise fill (learned shaper included) costs a little SI-SDR and buys a much
    lower mel distance than pure MSE decoding; it is seeded, so decoding repeats exactly."""
    from ncodec.audio.codec import AudioCodec

    x, rate = speech
    data = codec.encode(x, rate, kbps=24)
    filled = codec.decode(data).samples
    plain = AudioCodec("mdct", codec.model, codec.latent, codec.digest, noise_fill=0.0).decode(data).samples
    assert np.array_equal(filled, codec.decode(data).samples)
    assert mel_distance(x, filled, rate) < 0.5 * mel_distance(x, plain, rate)
    assert si_sdr(x, filled) > si_sdr(x, plain) - 3


def test_band_fill_beats_fixed_fill(codec, speech, monkeypatch):
    """The coded band levels give a lower mel distance than the fixed, scale-derived fill on the
    same stream; a stream without the ``bf`` field or with an unknown fill mode is a clear error."""
    from ncodec.audio import bandfill, frameboost
    from ncodec.audio.codec import AudioCodec

    x, rate = speech
    monkeypatch.setattr(frameboost, "measure_levels", lambda coefs: np.zeros(coefs.shape[-1], np.int64))
    c = Container.from_bytes(codec.encode(x, rate, kbps=12))
    assert c.fields["bf"] == bandfill.CURRENT == 3
    fixed = AudioCodec("mdct", codec.model, codec.latent, codec.digest, noise_fill=codec.config.noise_fill)
    assert mel_distance(x, codec.decode(c).samples, rate) < 0.85 * mel_distance(x, fixed.decode(c).samples, rate)
    for fields in ({**c.fields, "bf": 4}, {**c.fields, "bf": 1}, {k: v for k, v in c.fields.items() if k != "bf"}):
        with pytest.raises(CorruptStreamError):
            codec.decode(Container(c.codec, c.model, c.weights_digest, fields, c.sections).to_bytes())


def test_streams_of_an_older_format_version_ask_to_be_re_encoded(codec, speech):
    """Streams of container format version 1 are refused with a message that says what to do."""
    from ncodec.container import MAGIC

    x, rate = speech
    data = bytearray(codec.encode(x[:, :rate], rate, kbps=24))
    data[len(MAGIC)] = 1
    with pytest.raises(ModelMismatchError, match="older ncodec format version 1; re-encode"):
        codec.decode(bytes(data))


def test_band_fill_layout_follows_the_rate(codec, music):
    """20 ms fill tiles (``bf=3``) at ordinary rates; under 5 kbps per channel (or a low fixed quality)
    the 40 ms ones (``bf=2``), whose levels cost half as much, so that 6 kbps stereo still meets its
    rate."""
    x, rate = music
    for kwargs, layout in (({"kbps": 6}, 2), ({"kbps": 24}, 3), ({"quality": 1}, 2), ({"quality": 6}, 3)):
        data = codec.encode(x, rate, **kwargs)
        assert Container.from_bytes(data).fields["bf"] == layout
        if "kbps" in kwargs:
            assert abs(len(data) * 8 / (x.shape[1] / rate) / 1000 / kwargs["kbps"] - 1) < 0.1


def test_band_fill_codes_no_levels_above_the_inputs_nyquist_frequency(codec, speech, monkeypatch):
    """16 kHz speech: the bands above 8 kHz carry no fill levels (the decoder's resampler removes
    whatever is filled there), which saves bytes and changes the decoded samples by nothing audible."""
    x, rate = speech
    limited = codec.encode(x, rate, quality=6)
    decoded = codec.decode(limited).samples
    monkeypatch.setattr(codec, "_top_bin", lambda rate: codec.hop)      # levels in every band
    full = codec.encode(x, rate, quality=6)
    assert len(limited) < len(full) - 100
    assert np.abs(decoded - codec.decode(full).samples).max() < 1e-4


def test_frame_boost_levels_follow_quietness():
    """Frames near the chunk's loud ones keep the plain step; a frame 40 dB down gets the largest boost."""
    from ncodec.audio import frameboost

    coefs = torch.randn(2, 960, 1, 40, generator=torch.Generator().manual_seed(0))
    coefs[..., 30:] *= 0.01
    coefs[..., 20:30] *= 10 ** (-(frameboost.DEAD_DB + 2 * frameboost.STEP_DB) / 20)
    levels = frameboost.measure_levels(coefs)
    assert (levels[:20] == 0).all() and (levels[20:30] == 2).all() and (levels[30:] == frameboost.MAX_LEVEL).all()
    assert torch.allclose(frameboost.factors(levels)[0, 0, 0, 30:], torch.tensor(10 ** 1.5))


def test_frame_boost_lowers_mel_distance_at_equal_rate(codec, speech, monkeypatch):
    """Boosting the quiet frames (pauses) buys a lower mel distance at the same bitrate than
    coding every frame with one step, for a little SI-SDR."""
    from ncodec.audio import frameboost

    x, rate = speech
    boosted = Container.from_bytes(codec.encode(x, rate, kbps=48))
    with monkeypatch.context() as m:
        m.setattr(frameboost, "measure_levels", lambda coefs: np.zeros(coefs.shape[-1], np.int64))
        plain = codec.encode(x, rate, kbps=48)
    assert abs(len(boosted.to_bytes()) / len(plain) - 1) < 0.05
    out, ref = codec.decode(boosted).samples, codec.decode(plain).samples
    assert mel_distance(x, out, rate) < 0.9 * mel_distance(x, ref, rate)
    assert si_sdr(x, out) > 30                      # Opus: about 25 dB at 48 kbps


def test_power_law_exponent_follows_the_signal_and_rate_and_inverts():
    """Speech (said, or "auto" at 16 kHz sampling or less): 0.9 below 32 kbps per coded channel, 0.85
    from there (or the matching fixed qualities); music: always linear; anything else is a usage
    error.  Expanding undoes companding."""
    from ncodec.audio import powerlaw

    speech = [powerlaw.exponent_for("auto", 16000, k, None) for k in (1, 6, 24, 31.9, 32, 64)]
    assert speech == [900, 900, 900, 900, 850, 850]
    assert [powerlaw.exponent_for("speech", 16000, None, q) for q in (0, 7.9, 8, 11)] == [900, 900, 850, 850]
    assert powerlaw.exponent_for("speech", 48000, 64, None) == powerlaw.exponent_for("auto", 8000, 64, None) == 850
    assert powerlaw.exponent_for("music", 16000, 64, None) == powerlaw.exponent_for("auto", 22050, 64, None) == 1000
    with pytest.raises(UsageError):
        powerlaw.exponent_for("voice", 16000, 64, None)
    y = torch.randn(2, 480, 1, 8, generator=torch.Generator().manual_seed(0)) * 100
    for p in (1000, 900, 850, powerlaw.MIN_EXPONENT):
        c = powerlaw.compand(y, p)
        assert torch.allclose(powerlaw.expand(c, p), y, rtol=1e-4, atol=1e-4)
        assert (torch.sign(c) == torch.sign(y)).all()
    small, large = torch.tensor([0.5]), torch.tensor([400.0])     # finer below the pivot, coarser above
    assert powerlaw.compand(small, 850) > small and powerlaw.compand(large, 850) < large
    assert torch.allclose(powerlaw.compand(torch.tensor([powerlaw.PIVOT]), 850), torch.tensor([powerlaw.PIVOT]))


def test_power_law_lowers_speech_mel_distance_at_high_rate(codec, speech):
    """At 64 kbps the power-law quantizer (exponent 0.85, chosen for 16 kHz input) codes the speech
    clip's weak coefficients (its pauses, its quiet bands) finer than the linear one (``signal="music"``):
    about 15 % lower mel distance at the same size and SI-SDR (both decoded without the speech
    post-filter).  A missing exponent, one out of range or not an integer is a clear error, and so is
    an unknown signal."""
    from ncodec.audio.codec import AudioCodec

    x, rate = speech
    companded = Container.from_bytes(codec.encode(x, rate, kbps=64))
    linear = Container.from_bytes(codec.encode(x, rate, kbps=64, signal="music"))
    assert companded.fields["pw"] == 850 and linear.fields["pw"] == 1000
    assert abs(len(companded.to_bytes()) / len(linear.to_bytes()) - 1) < 0.05
    plain = AudioCodec("mdct", codec.model, codec.latent, codec.digest, postfilter=False)
    out, ref = plain.decode(companded).samples, plain.decode(linear).samples
    assert mel_distance(x, out, rate) < 0.9 * mel_distance(x, ref, rate)
    assert si_sdr(x, out) > si_sdr(x, ref) - 1.0
    missing = {k: v for k, v in companded.fields.items() if k != "pw"}
    for fields in [missing] + [{**companded.fields, "pw": wrong} for wrong in (0, 499, 1001, 850.0, "850")]:
        bad = Container(companded.codec, companded.model, companded.weights_digest, fields, companded.sections)
        with pytest.raises(CorruptStreamError):
            codec.decode(bad.to_bytes())
    with pytest.raises(UsageError):
        codec.encode(x, rate, kbps=64, signal="voice")


def test_training_warm_starts_trains_on_mel_resumes_and_exports(tmp_path, music):
    """``ncodec train audio --init`` on a tiny corpus: finite losses with the mel term, a resumed
    second invocation, and exported weights that code audio."""
    from ncodec.api import assets_dir
    from ncodec.audio import app, train
    from ncodec.audio.io import write_audio

    x, rate = music
    (tmp_path / "data" / "music").mkdir(parents=True)
    (tmp_path / "data" / "speech").mkdir()
    write_audio(tmp_path / "data" / "music" / "clip.wav", x[:, : rate], rate)
    write_audio(tmp_path / "data" / "speech" / "clip.wav", x[:1, ::3][:, : rate // 3], rate // 3)
    args = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--batch", "2", "--frames", "8",
            "--init", str(assets_dir() / app.WEIGHT_FILES["mdct"]), "--no-amp", "--mel-weight", "2",
            "--fill-width", "16"]
    assert train.main(args + ["--steps", "2"]) == 0
    assert train.main(args + ["--steps", "3", "--export", str(tmp_path / "w.safetensors")]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["config"]["fill_width"] > 0
    trained = app.load_codec("mdct", "cpu", tmp_path / "w.safetensors")
    y = trained.decode(trained.encode(x, rate, kbps=24)).samples
    assert si_sdr(x, y) > 10


def test_postfilter_trains_exports_and_shapes_speech_only(tmp_path, speech, music):
    """``ncodec train audio --postfilter`` trains a post-filter on the --init codec's decoded speech and
    exports it with the model; the post-filter changes how speech decodes (below 8 kHz only), never
    the stream, and music streams decode as without it."""
    from ncodec.api import assets_dir
    from ncodec.audio import app, train
    from ncodec.audio.codec import AudioCodec
    from ncodec.audio.io import write_audio
    from ncodec.errors import UsageError

    x, rate = speech
    (tmp_path / "speech").mkdir()
    write_audio(tmp_path / "speech" / "clip.wav", x, rate)
    args = ["--data", str(tmp_path / "speech"), "--out", str(tmp_path / "run"), "--batch", "2", "--frames", "16",
            "--init", str(assets_dir() / app.WEIGHT_FILES["mdct"]), "--postfilter", "4", "--lr", "1e-2"]
    assert train.main(args + ["--steps", "3", "--export", str(tmp_path / "w.safetensors")]) == 0
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 3
    with pytest.raises(UsageError, match="--init"):
        train.main([a for a in args if a != str(assets_dir() / app.WEIGHT_FILES["mdct"]) and a != "--init"])

    filtered = app.load_codec("mdct", "cpu", tmp_path / "w.safetensors")
    assert filtered.model.postfilter is not None
    last = filtered.model.postfilter.net[-1]
    torch.nn.init.normal_(last.weight, std=0.5)          # a clearly non-neutral filter, whatever 3 steps learned
    plain = AudioCodec("mdct", filtered.model, filtered.latent, filtered.digest, postfilter=False)
    data = filtered.encode(x, rate, kbps=12)
    assert plain.encode(x, rate, kbps=12) == data         # the encoder does not use it
    y, y_plain = filtered.decode(data).samples, plain.decode(data).samples
    assert np.abs(y - y_plain).max() > 1e-3
    assert si_sdr(x, y) > 5
    m, m_rate = music
    music_data = filtered.encode(m[:, : m_rate], m_rate, kbps=24)
    assert np.array_equal(filtered.decode(music_data).samples, plain.decode(music_data).samples)


def test_training_leaves_out_every_encoding_of_a_held_out_recording(tmp_path):
    """Held-out files are matched by recording, so a FLAC copy of a held-out Ogg file stays out too."""
    from ncodec.audio.train import HELD_OUT, training_files

    for name in ("3436-172162-0000.flac", "p232_003.wav", "encodec_test_24k.wav", "kept.wav"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in training_files(tmp_path, set(HELD_OUT))] == ["kept.wav"]


def test_zero_bin_variance_is_a_twelfth_for_huge_scales():
    """The zero-bin variance of a very wide Gaussian is 1/12; the closed form used to cancel into
    garbage from about scale 1e4 on (1.8e20 at 1e12), which blew up fresh training runs."""
    import math

    from ncodec.audio.latent import zero_bin_variance

    v = zero_bin_variance(torch.tensor([0.0, math.log(1e3), math.log(1e6), 50.0]))
    assert torch.isfinite(v).all() and v[0] < 1 / 12
    assert torch.allclose(v[1:], torch.full((3,), 1 / 12, dtype=torch.float64), rtol=1e-5)


def test_fresh_training_with_the_default_hop_codes_audio(tmp_path, music):
    """``ncodec train audio`` from scratch makes a model with the shipped 480-sample hop: finite
    weights, and the exported model codes audio to the input's length (band fill tiles stay 40 ms:
    4 frames of 480)."""
    from ncodec.audio import app, bandfill, train
    from ncodec.audio.io import write_audio

    x, rate = music
    (tmp_path / "data" / "music").mkdir(parents=True)
    write_audio(tmp_path / "data" / "music" / "clip.wav", x[:, : rate], rate)
    args = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--batch", "2", "--frames", "16",
            "--no-amp", "--steps", "30", "--export", str(tmp_path / "w.safetensors")]
    assert train.main(args) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["config"]["hop"] == 480 and all(torch.isfinite(t).all() for t in state["model"].values())
    assert bandfill.tile_frames(480, 2) == 4 and bandfill.tile_frames(960, 2) == 2 and bandfill.tile_frames(480, 3) == 2
    codec = app.load_codec("mdct", "cpu", tmp_path / "w.safetensors")
    y = codec.decode(codec.encode(x, rate, quality=6)).samples
    assert y.shape == x.shape and np.isfinite(y).all()
    for wrong in (["--hop", "960"], ["--hop", "480", "--init", str(tmp_path / "w.safetensors"), "--out",
                                     str(tmp_path / "new")]):
        with pytest.raises(UsageError, match="hop"):    # resuming with another hop; --hop with a warm start
            train.main(args + wrong)


@pytest.mark.parametrize("layout", [2, 3])
def test_a_240_hop_model_codes_whole_fill_tiles(tmp_path, music, monkeypatch, layout):
    """At a 240-sample hop a band fill tile is 8 frames (40 ms, layout 2) or 4 (20 ms, layout 3):
    chunks hold whole tiles of both (5 s chunks of 1000 frames) and the padded tail chunk of the
    layout written, so a ``--hop 240`` model codes audio of any length in either layout."""
    from ncodec.audio import app, bandfill, train
    from ncodec.audio.io import write_audio

    monkeypatch.setattr(bandfill, "CURRENT", layout)
    x, rate = music
    (tmp_path / "data" / "music").mkdir(parents=True)
    write_audio(tmp_path / "data" / "music" / "clip.wav", x[:, : rate], rate)
    assert train.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--batch", "2", "--frames",
                       "16", "--no-amp", "--steps", "3", "--hop", "240", "--export", str(tmp_path / "w.safetensors")]) == 0
    codec = app.load_codec("mdct", "cpu", tmp_path / "w.safetensors")
    assert (codec.hop, codec.frame_step, codec.chunk_frames) == (240, 8, 1000)
    clip = x[:, : int(1.3 * rate) + 7]
    data = codec.encode(clip, rate, quality=6)
    assert Container.from_bytes(data).fields["cf"] == 1000 and Container.from_bytes(data).fields["bf"] == layout
    y = codec.decode(data).samples
    assert y.shape == clip.shape and np.isfinite(y).all()


def test_training_checkpoints_on_sigterm(tmp_path, music):
    """``ncodec train audio`` ended by SIGTERM checkpoints before it exits, as on Ctrl-C."""
    from ncodec.audio.io import write_audio

    x, rate = music
    (tmp_path / "data" / "music").mkdir(parents=True)
    write_audio(tmp_path / "data" / "music" / "clip.wav", x[:, :rate], rate)
    out = tmp_path / "run"
    args = ["train", "audio", "--data", str(tmp_path / "data"), "--out", str(out), "--batch", "2", "--frames", "8",
            "--no-amp", "--steps", "100000"]
    assert terminate_training(args, out) > 0


def test_encoding_is_deterministic_and_quality_mode(codec, speech):
    x, rate = speech
    a, b = codec.encode(x, rate, quality=6), codec.encode(x, rate, quality=6)
    assert a == b
    assert len(codec.encode(x, rate, quality=3)) < len(a) < len(codec.encode(x, rate, quality=9))
    with pytest.raises(UsageError):
        codec.encode(x, rate, quality=6, kbps=24)
    with pytest.raises(UsageError):
        codec.encode(x, rate, quality=13)


@pytest.mark.parametrize("rate_in,rate_out", [(16000, 48000), (48000, 44100), (11025, 48000), (47999, 48000)])
def test_block_resampling_equals_whole_signal_resampling(rate_in, rate_out):
    """Blocks of any size resample to the whole signal's result and length (torchaudio's sinc
    filter; libswresample for rates whose polyphase kernel would be huge)."""
    import torchaudio

    from ncodec.audio.io import SINC, Resampler

    x = np.random.default_rng(0).standard_normal((2, rate_in + 321)).astype(np.float32)
    r = Resampler(2, rate_in, rate_out)
    cuts = [0, 1, 8, 1000, 20000, x.shape[1]]
    y = np.concatenate([r(x[:, a:b]) for a, b in zip(cuts, cuts[1:])] + [r(None)], axis=1)
    assert y.shape[1] == -(-x.shape[1] * rate_out // rate_in) or rate_in == 47999
    if rate_in == 47999:    # libswresample: the same length within its rounding, the signal kept
        assert abs(y.shape[1] - x.shape[1] * rate_out / rate_in) <= 2
        return
    whole = torchaudio.functional.resample(torch.from_numpy(x), rate_in, rate_out, **SINC).numpy()
    n = min(y.shape[1], whole.shape[1])    # torchaudio rounds the length in float32
    np.testing.assert_allclose(y[:, :n], whole[:, :n], atol=1e-4)


def test_resampling_round_trip_keeps_speech(speech):
    """16 kHz speech up to the model rate and back loses less than the codec's best rates do."""
    from ncodec.audio.io import Resampler

    x, rate = speech
    up, down = Resampler(1, rate, 48000), Resampler(1, 48000, rate)
    y = np.concatenate([up(x), up(None)], axis=1)
    z = np.concatenate([down(y), down(None)], axis=1)
    assert z.shape == x.shape
    assert si_sdr(x, z) > 48 and mel_distance(x, z, rate) < 0.004


@pytest.mark.parametrize("rate,channels", [(22050, 2), (8000, 1), (11025, 3)])
def test_odd_rates_and_layouts_restore_the_original(codec, speech, rate, channels):
    import torchaudio

    x, r0 = speech
    mono = torchaudio.functional.resample(torch.from_numpy(x[:, :r0 * 2]), r0, rate).numpy()
    x = np.concatenate([mono * g for g in (1.0, 0.6, -0.3)[:channels]], axis=0)
    out = codec.decode(codec.encode(x, rate, kbps=32))
    assert out.sample_rate == rate and out.samples.shape == x.shape
    assert si_sdr(x, out.samples) > 12


def test_chunks_leave_no_seams(codec, speech):
    """Coding in 52-frame chunks gives the same waveform error as coding the clip whole, also at the
    chunk boundaries (chunks are runs of global MDCT frames)."""
    from ncodec.audio.codec import AudioCodec

    x, rate = speech
    chunked = AudioCodec("mdct", codec.model, codec.latent, codec.digest, chunk_frames=52, noise_fill=0.0)
    whole = AudioCodec("mdct", codec.model, codec.latent, codec.digest, noise_fill=0.0)
    c = Container.from_bytes(chunked.encode(x, rate, quality=7))
    assert len(c.fields["q"]) > 2
    err_chunked = chunked.decode(c).samples - x
    err_whole = whole.decode(whole.encode(x, rate, quality=7)).samples - x
    win = rate // 50
    e_c = (err_chunked[0, : len(x[0]) // win * win] ** 2).reshape(-1, win).mean(1)
    e_w = (err_whole[0, : len(x[0]) // win * win] ** 2).reshape(-1, win).mean(1)
    boundaries = [int(k * 52 * codec.hop / codec.rate * 50) for k in range(1, len(c.fields["q"]))]
    for b in boundaries:
        near = slice(max(b - 2, 0), b + 2)
        assert e_c[near].max() <= 2 * max(e_w[near].max(), np.median(e_w)), b
    assert e_c.sum() <= 1.1 * e_w.sum()


def test_rate_reservoir_repays_earlier_chunks(codec, speech):
    """Each chunk's budget is its share of the target less what earlier chunks overspent (at most a
    quarter of the share either way), so short chunks' search errors do not add up: 64 kbps in
    52-frame chunks lands within 2 % of the target (6 % under without the reservoir)."""
    from ncodec.audio.codec import CHUNK_FIELD_BYTES, HEADER_BYTES, AudioCodec, RateReservoir

    r = RateReservoir(8.0, 48000)                       # 1000 bytes a second
    chunks = {"q": [], "zl": [], "yl": []}
    first = r.budget(48000, chunks)
    assert first == 1000 - CHUNK_FIELD_BYTES - HEADER_BYTES
    chunks = {"q": [1], "zl": [100], "yl": [round(first) - 100 + 50]}      # 50 bytes over
    share = 1000 - CHUNK_FIELD_BYTES
    assert abs(r.budget(48000, chunks) - (share - 50)) < 1
    chunks = {"q": [1, 1], "zl": [100, 100], "yl": [round(first) + 2000, 0]}  # far over: a quarter at most
    assert abs(r.budget(48000, chunks) - 0.75 * share) < 1

    x, rate = speech
    chunked = AudioCodec("mdct", codec.model, codec.latent, codec.digest, chunk_frames=52)
    data = chunked.encode(x, rate, kbps=64)
    assert len(Container.from_bytes(data).fields["q"]) > 4
    assert abs(8 * len(data) / (x.shape[1] / rate) / 1000 / 64 - 1) < 0.02


def test_damaged_streams_raise_clear_errors(codec, speech):
    x, rate = speech
    data = codec.encode(x[:, :rate], rate, kbps=24)
    with pytest.raises(CorruptStreamError):
        codec.decode(data[:-10])
    c = Container.from_bytes(data)
    for field, value in [("n", 10**12), ("m", 5), ("cf", 3), ("zl", [999999]), ("q", [10**6]), ("rate", 4000),
                         ("ch", 0)]:
        bad = Container(c.codec, c.model, c.weights_digest, {**c.fields, field: value}, c.sections)
        with pytest.raises(CorruptStreamError):
            codec.decode(bad.to_bytes())
    with pytest.raises(ModelMismatchError):
        codec.decode(Container(c.codec, c.model, b"\0" * 8, c.fields, c.sections).to_bytes())
    rng = np.random.default_rng(0)
    for _ in range(3):   # random payloads with a valid checksum: a clear error or audio, never a crash
        y = rng.integers(0, 256, len(c.sections["y"]), dtype=np.uint8).tobytes()
        bad = Container(c.codec, c.model, c.weights_digest, c.fields, {**c.sections, "y": y})
        try:
            assert codec.decode(bad.to_bytes()).samples.shape == (1, rate)
        except CorruptStreamError:
            pass


def test_bad_inputs_raise_input_error(codec):
    ok = np.zeros((1, 1000), np.float32)
    for samples, rate in [(np.zeros((1, 0), np.float32), 16000), (np.zeros((9, 100), np.float32), 16000),
                          (ok, 7999), (ok, 384001), (ok, 16000.5), (np.full((1, 10), np.nan, np.float32), 16000),
                          (np.zeros((1, 10), np.int32), 16000), (np.zeros((2, 2, 2), np.float32), 16000),
                          (np.broadcast_to(np.float32(0), (1, 3 * 3600 * 8000 + 1)), 8000)]:
        with pytest.raises(InputError):
            codec.encode(samples, rate, kbps=24)


def test_inputs_above_48_khz_are_coded_at_48_khz(codec, tmp_path, music):
    from ncodec.audio import app
    from ncodec.audio.io import Resampler, read_audio, write_audio

    x, rate = music
    assert rate == 48000
    x = x[:, :rate]
    up = Resampler(2, rate, 96000)                         # a 96 kHz master of the same music
    hi = np.concatenate([up(x), up(None)], axis=1)
    api = codec.decode(codec.encode(hi, 96000, kbps=24))
    assert api.sample_rate == 48000 and api.samples.shape == (2, 48000)
    assert si_sdr(x, api.samples) > 10
    src = tmp_path / "master.flac"
    write_audio(src, hi, 96000)
    report = app.encode_file(src, tmp_path / "master.ncz", None, "cpu", False, {"kbps": 24.0})
    assert report["rate"] == 48000 and "input at 96000 Hz" in report["summary"]
    app.decode_file(Container.from_bytes((tmp_path / "master.ncz").read_bytes()), tmp_path / "out.wav", "cpu", False)
    y, r = read_audio(tmp_path / "out.wav")
    assert r == 48000 and y.shape == (2, 48000) and si_sdr(x, y) > 10


def test_files_round_trip_and_leave_no_partial_output(codec, tmp_path, music):
    from ncodec.audio import app
    from ncodec.audio.io import read_audio, write_audio

    x, rate = music
    src = tmp_path / "clip.flac"
    write_audio(src, x[:, :rate], rate)
    report = app.encode_file(src, tmp_path / "clip.ncz", None, "cpu", False, {"kbps": 24.0})
    assert abs(report["kbps"] / 24 - 1) < 0.1
    c = Container.from_bytes((tmp_path / "clip.ncz").read_bytes())
    app.decode_file(c, tmp_path / "out.wav", "cpu", False)
    y, r = read_audio(tmp_path / "out.wav")
    assert r == rate and y.shape == (2, rate)
    assert si_sdr(read_audio(src)[0], y) > 10
    with pytest.raises(OutputError):
        app.decode_file(c, tmp_path / "out.wav", "cpu", False)           # exists, no --force
    with pytest.raises(OutputError):
        app.decode_file(c, tmp_path / "out.mp3", "cpu", False)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really")
    with pytest.raises(InputError):
        app.encode_file(tmp_path / "junk.wav", tmp_path / "junk.ncz", None, "cpu", False, {})
    with pytest.raises(InputError):
        app.encode_file(tmp_path / "missing.wav", tmp_path / "missing.ncz", None, "cpu", False, {})
    with pytest.raises(UsageError):   # a video option: the file API refuses it before reading anything
        ncodec.api.encode_file(src, tmp_path / "x.ncz", codec="mdct", size=3)
    from ncodec.cli import main

    assert main(["encode", str(src), str(tmp_path / "speech.ncz"), "--kbps", "64", "--signal", "speech"]) == 0
    speech = Container.from_bytes((tmp_path / "speech.ncz").read_bytes())
    assert speech.fields["pw"] == 850                            # 48 kHz: auto would be music
    assert app.describe(speech, 0)["quantizer"] == "power 0.85 (speech)" and app.describe(c, 0)["quantizer"] == "linear"
    assert main(["encode", str(src), str(tmp_path / "x.ncz"), "--signal", "voice"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.flac", "clip.ncz", "junk.wav", "out.wav", "speech.ncz"]
