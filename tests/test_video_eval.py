"""The video RD sweep: Huffman baseline, classical codecs through PyAV, JSON/BD/plot outputs."""
import json

import numpy as np
import pytest
import torch

from ncodec.eval.rd_video import classical_point, huffman_bits, huffman_report, run_video_eval
from ncodec.video.codec import VideoCodec
from ncodec.video.io import Video, write_video
from test_video import synthetic_clip


def test_huffman_bits_matches_hand_computed_codes():
    assert huffman_bits(np.array([5, 5, 5])) == 3                  # one symbol: one bit each
    assert huffman_bits(np.array([1, 2, 3, 3])) == 6               # lengths 2, 2, 1
    rng = np.random.default_rng(0)
    s = rng.integers(0, 256, 4096)
    assert 7.9 * s.size < huffman_bits(s) < 8.1 * s.size


def test_classical_point_measures_a_real_stream():
    frames = synthetic_clip(4, 32, 48)
    p = classical_point(frames, 25, "libx264", 23)
    assert p["bytes"] > 0 and p["psnr-rgb"] > 25 and 0 < p["ms-ssim-rgb"] <= 1 and p["decoding_fps"] > 0


def test_huffman_report_on_a_coded_network():
    torch.set_num_threads(1)
    codec = VideoCodec("nerv", "cpu")
    data = codec.encode(Video(synthetic_clip(), 25), size="12k", epochs=3, progress=False)
    r = huffman_report(data)
    assert r["bytes"] == len(data) and r["huffman_bytes"] > 0.8 * r["bytes"]


def test_sweep_writes_curves_tables_and_plot(tmp_path):
    torch.set_num_threads(1)
    src = tmp_path / "clip"
    write_video(src, Video(synthetic_clip(4, 32, 48), 25))
    with pytest.raises(ValueError, match="anchor"):      # refused before any fitting
        run_video_eval(src, ["nerv", "libx264"], tmp_path / "out", ["10k"], [8], epochs=2, anchor="libx265")
    summary = run_video_eval(src, ["nerv", "libx264"], tmp_path / "out", ["10k", "16k"], [8], epochs=2,
                             huffman=True, progress=False, checkpoint_dir=tmp_path / "new" / "ckpt")
    out = tmp_path / "out"
    for name in ("nerv-8bit", "nerv-8bit-huffman", "libx264"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"]) and "psnr-y" in doc["results"]
    assert (out / "bdrate.md").exists() and (out / "entropy.md").exists() and (out / "rd.png").stat().st_size > 0
    assert summary["frames"] == 4
    assert len(list((tmp_path / "new" / "ckpt").iterdir())) == 2    # the folder is made; one checkpoint per fit
