"""The video RD sweep: classical codecs through PyAV, JSON/BD/plot outputs."""
import json

import pytest
import torch

from ncodec.eval.rd_video import classical_point, run_video_eval
from ncodec.video.io import Video, write_video
from test_video import synthetic_clip


def test_classical_point_measures_a_real_stream():
    frames = synthetic_clip(4, 32, 48)
    p = classical_point(frames, 25, "libx264", 23)
    assert p["bytes"] > 0 and p["psnr-rgb"] > 25 and 0 < p["ms-ssim-rgb"] <= 1 and p["decoding_fps"] > 0


def test_sweep_writes_curves_tables_and_plot(tmp_path):
    torch.set_num_threads(1)
    src = tmp_path / "clip"
    write_video(src, Video(synthetic_clip(4, 32, 48), 25))
    with pytest.raises(ValueError, match="anchor"):      # refused before any fitting
        run_video_eval(src, ["nerv", "libx264"], tmp_path / "out", sizes=["10k"], epochs=2, anchor="libx265")
    summary = run_video_eval(src, ["nerv", "libx264"], tmp_path / "out", sizes=["10k", "16k"], bits=[8], epochs=2,
                             progress=False, checkpoint_dir=tmp_path / "new" / "ckpt",
                             arch_options={"local_knots": 2, "residual": 1})
    out = tmp_path / "out"
    for name in ("nerv-medium-8bit-e2-local2-residual", "libx264"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"]) and "psnr-y" in doc["results"]
    assert (out / "bdrate.md").exists() and (out / "rd.png").stat().st_size > 0
    assert summary["frames"] == 4
    assert len(list((tmp_path / "new" / "ckpt").iterdir())) == 2    # the folder is made; one checkpoint per fit
