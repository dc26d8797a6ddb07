"""Audio evaluation: metrics, the PyAV baselines and a tiny RD sweep."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ncodec.eval import audio_metrics as am
from ncodec.eval.classical_audio import CODECS, align


def _tone(rate: int = 16000, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t) * np.sin(2 * np.pi * 3 * t)
    return np.repeat(x[None].astype(np.float32), channels, axis=0)


def test_si_sdr_and_mel_distance():
    x = _tone()
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    assert am.si_sdr(x, x) == math.inf
    assert am.si_sdr(x, 3 * x) > 100                             # scale invariant
    expected = 10 * math.log10((x ** 2).sum() / ((0.01 * noise) ** 2).sum())
    assert abs(am.si_sdr(x, x + 0.01 * noise) - expected) < 0.2
    assert am.mel_distance(x, x, 16000) == 0
    assert am.mel_distance(x, x + 0.001 * noise, 16000) < am.mel_distance(x, x + 0.05 * noise, 16000)
    with pytest.raises(ValueError):
        am.si_sdr(x, x[:, :-1])


@pytest.mark.parametrize("name", sorted(CODECS))
def test_classical_codecs_round_trip(name):
    x = _tone(rate=44100, channels=2)
    data = CODECS[name].encode(x, 44100, 64)
    y = align(x, CODECS[name].decode(data, 44100, 2))
    assert y.shape == x.shape and len(data) > 1000
    assert am.si_sdr(x, y) > 5


def test_align_finds_a_delay():
    x = _tone()
    delayed = np.pad(x, ((0, 0), (37, 0)))
    assert np.allclose(align(x, delayed), x)


def test_rd_sweep_writes_curves_tables_and_plots(tmp_path):
    from ncodec.audio import app
    from ncodec.api import assets_dir
    from ncodec.audio.io import write_audio
    from ncodec.eval.rd_audio import run_audio_eval

    if not (assets_dir() / app.WEIGHT_FILES["mdct"]).exists():
        pytest.skip("assets/audio-mdct.safetensors is missing")
    (tmp_path / "in" / "speech").mkdir(parents=True)
    write_audio(tmp_path / "in" / "speech" / "tone.wav", _tone(seconds=1.5), 16000)
    summary = run_audio_eval(tmp_path / "in", ["ncodec:mdct", "opus"], tmp_path / "out", [16, 32],
                             visqol_kbps=set(), weights=str(assets_dir() / app.WEIGHT_FILES["mdct"]))
    curves = summary["speech"]
    assert set(curves) == {"ncodec-mdct", "opus"}
    assert all(abs(k / t - 1) < 0.1 for k, t in zip(curves["ncodec-mdct"]["kbps"], [16, 32]))
    doc = json.loads((tmp_path / "out" / "speech" / "ncodec-mdct.json").read_text())
    assert doc["results"]["si-sdr"][1] > doc["results"]["si-sdr"][0]
    assert (tmp_path / "out" / "speech-si-sdr.png").exists()
    assert "ncodec-mdct | si-sdr" in (tmp_path / "out" / "bdrate.md").read_text()

    # a later sweep re-runs only ncodec and takes Opus's curve from the first one's JSON
    opus_json = tmp_path / "out" / "speech" / "opus.json"
    again = run_audio_eval(tmp_path / "in", ["ncodec:mdct"], tmp_path / "again", [16, 32], visqol_kbps=set(),
                           reference_jsons=[opus_json])
    assert again["speech"]["opus"] == curves["opus"] and "ncodec-mdct" in again["speech"]
    assert "| opus | si-sdr | +0.0 |" in (tmp_path / "again" / "bdrate.md").read_text()
    assert not (tmp_path / "again" / "speech" / "opus.json").exists()
    # --signal music: ncodec codes the 16 kHz input with the linear quantizer, and the JSON says so
    music = run_audio_eval(tmp_path / "in", ["ncodec:mdct"], tmp_path / "music", [16], anchor="ncodec-mdct",
                           visqol_kbps=set(), signal="music")
    assert music["speech"]["ncodec-mdct"]["si-sdr"] != curves["ncodec-mdct"]["si-sdr"][:1]
    assert "signal music" in json.loads((tmp_path / "music" / "speech" / "ncodec-mdct.json").read_text())["description"]
    # without the post-filter: the same bytes, another waveform, and the JSON says so
    plain = run_audio_eval(tmp_path / "in", ["ncodec:mdct"], tmp_path / "plain", [16, 32], anchor="ncodec-mdct",
                           visqol_kbps=set(), postfilter=False)
    assert plain["speech"]["ncodec-mdct"]["kbps"] == curves["ncodec-mdct"]["kbps"]
    assert plain["speech"]["ncodec-mdct"]["si-sdr"] != curves["ncodec-mdct"]["si-sdr"]
    assert "without the post-filter" in json.loads((tmp_path / "plain" / "speech" / "ncodec-mdct.json").read_text())["description"]
    # with no codec to run, earlier results alone redraw the tables, each point against Opus at equal rate
    tables = run_audio_eval(tmp_path / "in", [], tmp_path / "tables", [16, 32], visqol_kbps=set(),
                            reference_jsons=[tmp_path / "out" / "speech" / "ncodec-mdct.json", opus_json])
    assert tables["speech"] == curves
    md = (tmp_path / "tables" / "bdrate.md").read_text()
    assert "At equal rate" in md and "| ncodec-mdct | 16 |" in md and "| opus | 16 |" not in md.split("At equal")[1]
    for codecs, kbps, match in ((["ncodec:mdct"], [16], "other files or bitrates"),
                                (["ncodec:mdct", "opus"], [16, 32], "already in the sweep")):
        with pytest.raises(ValueError, match=match):
            run_audio_eval(tmp_path / "in", codecs, tmp_path / "bad", kbps, reference_jsons=[opus_json])
    with pytest.raises(ValueError, match="not a result file"):
        run_audio_eval(tmp_path / "in", ["ncodec:mdct"], tmp_path / "bad", [16, 32],
                       reference_jsons=[tmp_path / "out" / "bdrate.md"])
