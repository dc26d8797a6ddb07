"""``ncodec bench`` for video and audio: report structure, ratios and the markdown tables, on tiny
synthetic inputs (no research data needed)."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from ncodec.audio.io import write_audio
from ncodec.cli import _bench_options, build_parser, main
from ncodec.eval.bench import bench_audio, format_audio_report
from ncodec.video.io import Video, write_video
from conftest import natural_image
from test_video import synthetic_clip


def _positive(*values) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values)


def _table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """Markdown header and body rows by their first two cells, each checked to have as many cells as the header."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    width = lines[0].count("|")
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) == set()
    assert all(ln.count("|") == width for ln in lines)
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[:1] + lines[2:]]
    return {(r[0], r[1]): r for r in rows}


def test_video_bench_cli_writes_json_and_table(tmp_path, capsys):
    torch.set_num_threads(1)
    src = tmp_path / "clip"
    write_video(src, Video(synthetic_clip(4, 32, 48), 25))
    out = tmp_path / "bench.json"
    assert main(["bench", "--modality", "video", str(src), "--codecs", "hnerv,nerv,libx264", "--size", "10k",
                 "--epochs", "1", "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["modality"], report["frames"], report["width"], report["height"]) == ("video", 4, 48, 32)
    assert report["epochs"] == 1 and report["anchor"] == "libx264" and "cpu" in report["machine"]
    rows = {r["codec"]: r for r in report["codecs"]}
    assert list(rows) == ["hnerv", "nerv", "libx264"] and all(r["device"] == "cpu" for r in rows.values())
    for name in ("hnerv", "nerv"):
        r = rows[name]
        assert _positive(r["s_per_epoch"], r["s_per_epoch_per_frame"], r["decode_fps"], r["encode_realtime"])
        assert r["s_per_epoch_per_frame"] == pytest.approx(r["s_per_epoch"] / 4)
        assert r["decode_realtime"] == pytest.approx(r["decode_fps"] / 25)
        assert r["decode_fps_vs_anchor"] == pytest.approx(r["decode_fps"] / rows["libx264"]["decode_fps"])
        assert 0 < r["params"] <= 12_000 and r["bytes"] > 0 and 0 < r["decode_entropy_share"] < 1
    x264 = rows["libx264"]
    assert _positive(x264["decode_fps"], x264["encode_realtime"]) and x264["decode_fps_vs_anchor"] == 1
    assert x264["setting"].startswith("CRF ") and "s_per_epoch" not in x264
    table = _table_rows(capsys.readouterr().out)
    assert set(table) == {("codec", "device"), ("hnerv", "cpu"), ("nerv", "cpu"), ("libx264", "cpu")}
    assert table[("codec", "device")][-1] == "decode fps vs libx264"
    assert table[("libx264", "cpu")][-1] == "1x" and table[("libx264", "cpu")][3] == "-"
    assert table[("nerv", "cpu")][3] != "-" and table[("nerv", "cpu")][-1].endswith("x")


def test_video_bench_stages_are_the_codec():
    """The bench decodes a video stream stage by stage: the stages give the very clip ``decode`` gives."""
    from ncodec.eval.bench import _decode_video_stages
    from ncodec.video.codec import VideoCodec

    torch.set_num_threads(1)
    codec = VideoCodec("hnerv", "cpu")
    data = codec.encode(Video(synthetic_clip(4, 32, 48), 25), size="10k", epochs=1, progress=False)
    video, seconds = _decode_video_stages(codec, data)
    assert np.array_equal(video.frames, codec.decode(data).frames) and video.fps == 25
    assert set(seconds) == {"container", "entropy", "synthesis"}


def test_audio_bench_over_a_folder(tmp_path):
    torch.set_num_threads(1)
    t = np.arange(2 * 48000) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    (tmp_path / "music").mkdir()
    write_audio(tmp_path / "music" / "a.wav", np.stack([tone, 0.8 * tone]), 48000)
    write_audio(tmp_path / "b.wav", tone[None, ::3].copy(), 16000)
    report = bench_audio(tmp_path, ["ncodec:mdct", "opus", "mp3"], kbps=32, seconds=1.5, device="cpu",
                         progress=False)
    assert sorted(report["files"]) == ["b.wav", "music/a.wav"] and report["seconds"] == pytest.approx(3.0)
    rows = {r["codec"]: r for r in report["codecs"]}
    assert list(rows) == ["ncodec-mdct", "opus", "mp3"]
    for r in rows.values():
        assert _positive(r["encode_realtime"], r["decode_realtime"], r["kbps"])
        assert r["encode_realtime"] == pytest.approx(report["seconds"] / r["encode_s"])
        assert 8 < r["kbps"] < 100 and r["si-sdr"] > 0
    assert rows["opus"]["decode_realtime_vs_anchor"] == 1
    mdct = rows["ncodec-mdct"]
    assert mdct["decode_realtime_vs_anchor"] == pytest.approx(mdct["decode_realtime"] / rows["opus"]["decode_realtime"])
    table = _table_rows(format_audio_report(report))
    assert {k[0] for k in table} == {"codec", "ncodec-mdct", "opus", "mp3"}
    assert table[("opus", "cpu")][-2:] == ["1x", "1x"] and table[("codec", "device")][-1] == "decode speed vs opus"


def test_bench_options_belong_to_their_modality(tmp_path, capsys):
    Image.fromarray(natural_image(64, 64)).save(tmp_path / "a.png")
    assert main(["bench", str(tmp_path), "--epochs", "3"]) == 2
    assert main(["bench", "--modality", "audio", str(tmp_path / "a.png"), "--compressai"]) == 2
    assert main(["bench", "--modality", "video", str(tmp_path), "--codecs", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--epochs applies to --modality video, not image" in err
    assert "--compressai applies to --modality image, not audio" in err and "unknown video codec 'nope'" in err
    zero = build_parser().parse_args(["bench", "--modality", "audio", "x.wav", "--seconds", "0"])
    assert _bench_options(zero) == {"seconds": 0}        # 0 = the whole file, not "not given"
    assert main(["bench", str(tmp_path), "--models", "factorized", "--limit", "1", "--quality", "2"]) == 0
    out = capsys.readouterr().out
    assert "| factorized |" in out and "quality 2.0, 1 images" in out


def test_image_bench_stages_are_the_codec(photo):
    """The bench times an image codec stage by stage: the stages make the very stream and image
    that ``encode`` and ``decode`` make."""
    import ncodec
    from ncodec.eval.bench import _decode_stages, _encode_stages

    codec = ncodec.load_codec("slice", device="cpu")
    acc = {f"{side}_{key}_s": 0.0 for side in ("enc", "dec") for key in ("transform", "entropy", "coding", "container")}
    acc["symbols"] = 0
    data, ideal_bits = _encode_stages(codec, photo, 2.0, "cpu", acc)
    assert data == codec.encode(photo, 2) and 0 < ideal_bits < 8 * len(data)
    assert np.array_equal(_decode_stages(codec, data, 2.0, "cpu", acc), codec.decode(data))
    assert acc["symbols"] == 320 * 8 * 8 + 192 * 2 * 2     # y and z of a 128x128-padded image


def test_image_bench_splits_time_and_compares_coders(tmp_path):
    """The image report splits each side's time into transforms, entropy parameters, coding and
    container work, times the range coder alone beside CompressAI's, and times Pillow codecs at the
    first model's bpp, image by image."""
    from ncodec.eval.bench import bench_image, format_report

    torch.set_num_threads(1)
    Image.fromarray(natural_image(96, 128)).save(tmp_path / "a.png")
    Image.fromarray(natural_image(128, 96)).save(tmp_path / "b.png")
    report = bench_image(tmp_path, models=["hyperprior"], quality=2, compressai=True, classical=["webp"])
    m = report["models"]["hyperprior"]
    for side in ("enc_shares", "dec_shares"):
        assert sum(m[side].values()) == pytest.approx(1) and all(v >= 0 for v in m[side].values())
    assert m["coder"]["symbols"] == 2 * (192 * 2 * 2 * 16 + 128 * 2 * 2)    # y and z of two 128x128-padded images
    assert _positive(m["coder"]["encode_Msym_per_s"], m["compressai"]["coder"]["decode_Msym_per_s"])
    assert 0 <= m["coder"]["overhead_pct"] < 1
    webp = report["classical"]["webp"]
    assert abs(webp["bpp"] - m["bpp"]) < 0.5 * m["bpp"] and _positive(webp["encode_MP_per_s"], webp["psnr"])
    table = format_report(report)
    assert "| webp |" in table and "Entropy coders alone" in table
    assert main(["bench", str(tmp_path), "--classical", "gif"]) == 2
