"""The ncodec command line end to end, including its error handling."""
import json
from pathlib import Path

import numpy as np
from PIL import Image

import ncodec
from ncodec.cli import main
from conftest import natural_image


def write_png(path: Path, h=40, w=56):
    Image.fromarray(natural_image(h, w)).save(path)
    return path


def test_encode_info_decode(tmp_path, capsys):
    src = write_png(tmp_path / "a.png")
    assert main(["encode", str(src), str(tmp_path / "a.ncz"), "-q", "4", "--device", "cpu"]) == 0
    assert main(["info", str(tmp_path / "a.ncz")]) == 0
    out = capsys.readouterr().out
    assert ncodec.DEFAULT_IMAGE_CODEC in out and "section  y" in out and "bpp" in out
    assert main(["decode", str(tmp_path / "a.ncz"), str(tmp_path / "b.png"), "--device", "cpu"]) == 0
    assert np.asarray(Image.open(tmp_path / "b.png")).shape == (40, 56, 3)


def test_no_overwrite_without_force(tmp_path, capsys):
    src = write_png(tmp_path / "a.png")
    dst = tmp_path / "a.ncz"
    dst.write_bytes(b"precious")
    assert main(["encode", str(src), str(dst)]) == 6
    assert dst.read_bytes() == b"precious"
    assert "already exists" in capsys.readouterr().err
    assert main(["encode", str(src), str(dst), "--force"]) == 0
    assert dst.read_bytes()[:4] == b"\x89NCZ"


def test_errors_are_one_line_with_distinct_codes(tmp_path, capsys):
    bad = tmp_path / "bad.ncz"
    bad.write_bytes(b"\x89NCZ" + bytes(40))
    assert main(["decode", str(bad), str(tmp_path / "x.png")]) == 4
    assert not (tmp_path / "x.png").exists()
    assert main(["decode", str(tmp_path / "missing.ncz"), str(tmp_path / "x.png")]) == 3
    (tmp_path / "notimage.png").write_bytes(b"not a png")
    assert main(["encode", str(tmp_path / "notimage.png"), str(tmp_path / "n.ncz")]) == 3
    assert main(["encode", str(write_png(tmp_path / "a.png")), str(tmp_path / "a.ncz"), "--model", "nope"]) == 2
    assert main(["encode", str(tmp_path / "a.png"), str(tmp_path / "no_dir" / "a.ncz")]) == 6
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert all(line.startswith("ncodec") for line in err.strip().splitlines())


def test_batch_keeps_going(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_png(src / "a.png")
    write_png(src / "b.png", 20, 30)
    (src / "c.png").write_bytes(b"broken")
    assert main(["encode", str(src), str(tmp_path / "out"), "--jobs", "2"]) == 3     # two worker processes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.ncz", "b.ncz"]
    assert main(["encode", str(src), str(tmp_path / "serial"), "--jobs", "1"]) == 3
    for name in ("a.ncz", "b.ncz"):                                                   # same bytes either way
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
    assert main(["decode", str(tmp_path / "out"), str(tmp_path / "png"), "--jobs", "2"]) == 0
    assert len(list((tmp_path / "png").iterdir())) == 2
    out = capsys.readouterr()
    assert "c.png" in out.err and "2 of 3 files done, 1 failed" in out.out
    assert main(["encode", str(src), str(tmp_path / "out2"), "--jobs", "0"]) == 2


def test_command_keeps_freed_memory_on_glibc(monkeypatch):
    """The command (not the library) sets glibc's malloc to reuse freed memory; elsewhere a no-op."""
    import platform
    import subprocess
    import sys

    import ncodec.allocator

    calls = []
    monkeypatch.setattr(ncodec.allocator, "keep_freed_memory", lambda: calls.append(1))
    assert main(["no-such-command"]) != 0 and calls == [1]

    code = "import ncodec.allocator as a; print(a.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out[0] == str(on_glibc)


def test_precision_option_for_image_transforms(tmp_path, capsys):
    """--precision picks the transforms' precision when encoding and decoding images: a bf16
    encode is a stream the float32 decoder reads (and vice versa) at nearly the same quality;
    other modalities refuse the flag with a usage error."""
    from ncodec.eval.metrics import psnr

    src = write_png(tmp_path / "a.png", 64, 96)
    ref = np.asarray(Image.open(src))
    assert main(["encode", str(src), str(tmp_path / "bf16.ncz"), "-q", "3", "--precision", "bfloat16"]) == 0
    decoded = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.png"
        assert main(["decode", str(tmp_path / "bf16.ncz"), str(out), "--precision", precision]) == 0
        decoded[precision] = psnr(ref, np.asarray(Image.open(out)))
    assert decoded["float32"] > 24 and abs(decoded["float32"] - decoded["bfloat16"]) < 0.2
    data = (tmp_path / "bf16.ncz").read_bytes()
    assert psnr(ref, ncodec.decode(data, precision="bfloat16")) == decoded["bfloat16"]

    rate = 16000
    tone = (0.3 * np.sin(np.arange(rate) * 2 * np.pi * 440 / rate)).astype(np.float32)[None]
    (tmp_path / "tone.ncz").write_bytes(ncodec.encode((tone, rate), codec="mdct", kbps=12))
    assert main(["decode", str(tmp_path / "tone.ncz"), str(tmp_path / "tone.wav"), "--precision", "bfloat16"]) == 2
    assert not (tmp_path / "tone.wav").exists()
    assert "audio decoding does not take --precision" in capsys.readouterr().err


# Modules a command must not import unless it runs them: the ML stack, the media libraries and
# ncodec's model, training and evaluation code (prefixes of dotted module names).
HEAVY = ("torch", "torchaudio", "compressai", "numpy", "scipy", "PIL", "matplotlib", "av", "skimage", "constriction",
         "safetensors", "ncodec.entropy", "ncodec.eval", "ncodec.image.codec", "ncodec.image.models",
         "ncodec.image.train", "ncodec.audio.train", "ncodec.audio.powerlaw", "ncodec.video.codec")


def heavy_imports(args: list[str]) -> tuple[int, list[str]]:
    """Run ``ncodec ARGS`` in a fresh interpreter; its exit code and the HEAVY modules it imported."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\nfrom ncodec.cli import main\ntry:\n    rc = main(sys.argv[1:])\n"
            "except SystemExit as exc:\n    rc = exc.code\nprint(json.dumps([rc, sorted(sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    rc, modules = json.loads(out.splitlines()[-1])
    return rc, [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_light_commands_import_no_model_code(tmp_path):
    """--help, the listings, and rejecting a file that is no ncodec stream import nothing heavy: a
    command loads what it runs when it runs it."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(range(154)))
    corrupt = tmp_path / "corrupt.ncz"
    corrupt.write_bytes(b"\x89NCZ" + bytes(40))
    cases = {("--help",): 0, ("train", "--help"): 0, ("eval", "--help"): 0, ("models",): 0,
             ("info", str(bad)): 4, ("info", str(corrupt)): 4, ("decode", str(bad), str(tmp_path / "o.png")): 4,
             ("decode", str(corrupt), str(tmp_path / "o.png")): 4, ("info", str(tmp_path / "missing.ncz")): 3,
             ("plot", str(tmp_path / "missing.json"), "-o", str(tmp_path / "rd.png")): 3}
    for args, expected in cases.items():
        rc, heavy = heavy_imports(list(args))
        assert (rc, heavy) == (expected, []), f"ncodec {' '.join(args)}"


def test_info_of_an_image_stream_imports_no_model_code(tmp_path):
    stream = tmp_path / "a.ncz"
    stream.write_bytes(ncodec.encode(natural_image(32, 48), codec="factorized", quality=2, device="cpu"))
    assert heavy_imports(["info", str(stream)]) == (0, [])


def test_modality_apps_declare_their_interface():
    """Every registered modality names its codecs and commands and declares its options in a light
    module; the full parser (the one documentation is checked against) holds them all."""
    from ncodec import registry
    from ncodec.cli import build_parser

    for modality, app in registry.apps().items():
        assert app.DEFAULT_CODEC in app.CODECS and app.DECODED_SUFFIX.startswith(".")
        assert set(app.COMMANDS) <= {"train", "eval"}
        for flag, kwargs in app.encode_options() + app.decode_options():
            assert flag.startswith("--") and "default" not in kwargs, (modality, flag)
    assert ncodec.DEFAULT_IMAGE_CODEC == registry.app("image").DEFAULT_CODEC
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "--kbps" in sub.choices["encode"].format_help() and "--precision" in sub.choices["decode"].format_help()
    train = next(a for a in sub.choices["train"]._actions if a.dest == "modality")
    assert sorted(train.choices) == ["audio", "image"] and "--arch" in train.choices["image"].format_help()


def test_chosen_subcommand_gets_its_options(capsys):
    """The command line fills in only the subcommand it runs, options and help included."""
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["train", "image", "--help"])
    assert exc.value.code == 0 and "--arch" in capsys.readouterr().out
    assert main(["encode", "x.png", "y.ncz", "--no-such-option"]) == 2


def write_curve(path: Path, name: str = "c", psnr=(30.0, 33.0, 36.0)) -> Path:
    import json

    path.write_text(json.dumps({"name": name, "results": {"bpp": [0.25, 0.5, 1.0], "psnr-rgb": list(psnr)}}))
    return path


def test_plot_errors(tmp_path, capsys):
    """Missing or unreadable curve files are the user's input errors (3); a wrong output suffix or
    a metric no curve has, usage errors (2)."""
    good = write_curve(tmp_path / "good.json")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "other.json").write_text('{"a": 1}')
    out = str(tmp_path / "rd.png")
    assert main(["plot", str(tmp_path / "missing" / "*.json"), "-o", out]) == 3
    for name in ("bad.json", "binary.json", "other.json"):
        assert main(["plot", str(good), str(tmp_path / name), "-o", out]) == 3, name
    assert main(["plot", str(tmp_path), "-o", out]) == 3
    assert main(["plot", str(good), "-o", str(tmp_path / "rd.pdf")]) == 2
    assert main(["plot", str(good), "-o", out, "--metric", "ms-ssim-rgb"]) == 2
    assert not Path(out).exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 7 and all(line.startswith("ncodec: error: ") for line in err), err
    assert "does not exist" in err[0] and "not a JSON file" in err[1] and "not a JSON file" in err[2]
    assert main(["plot", str(good), "-o", out]) == 0 and Path(out).stat().st_size > 0


def test_eval_bench_train_input_errors(tmp_path, capsys):
    """Missing inputs, empty folders and unreadable references end as one line with exit code 3;
    bad option values with 2; an output folder that does not exist with 6."""
    empty = tmp_path / "empty"
    empty.mkdir()
    photos = tmp_path / "photos"
    photos.mkdir()
    write_png(photos / "a.png", 16, 24)
    (tmp_path / "bad.json").write_text("[")
    missing = str(tmp_path / "missing")
    out = ["--out", str(tmp_path / "out")]
    cases = [
        (["eval", "image", missing, *out], 3), (["eval", "image", str(empty), *out], 3),
        (["eval", "image", str(photos / "a.png"), *out], 3),
        (["eval", "image", str(photos), "--reference", missing + ".json", *out], 3),
        (["eval", "image", str(photos), "--reference", str(tmp_path / "bad.json"), *out], 3),
        (["eval", "image", str(photos), "--codecs", ",", *out], 2),
        (["eval", "image", str(photos), "--codecs", "jpeg,nope", *out], 2),
        (["eval", "image", str(photos), "--codecs", "jpeg", "--anchor", "webp", *out], 2),
        (["eval", "audio", missing, *out], 3), (["eval", "audio", str(empty), *out], 3),
        (["eval", "video", missing + ".mp4", *out], 3),
        (["bench", missing], 3), (["bench", str(empty)], 3), (["bench", str(photos), "--limit", "-1"], 2),
        (["bench", str(photos), "--kbps", "12"], 2), (["bench", str(photos), "--json", missing + "/r.json"], 6),
        (["bench", "--modality", "audio", missing + ".wav"], 3), (["bench", "--modality", "audio", str(empty)], 3),
        (["bench", "--modality", "video", missing + ".mp4"], 3),
        (["train", "image", "--arch", "factorized", "--data", missing, "--out", str(tmp_path / "run")], 3),
        (["train", "audio", "--data", missing, "--out", str(tmp_path / "run")], 3),
    ]
    for args, expected in cases:
        assert main(args) == expected, args
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(cases) and all(line.startswith("ncodec: error: ") for line in err), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_eval_anchor_defaults_to_a_swept_codec(tmp_path):
    """Without --anchor the BD table is against a codec of the sweep or a reference curve: avif when
    there, else the first classical codec, else the first codec (image, video and audio alike)."""
    from ncodec.eval import rd_audio, rd_image, rd_video

    photos = tmp_path / "photos"
    photos.mkdir()
    write_png(photos / "a.png", 32, 48)
    write_png(photos / "b.png", 24, 40)
    assert main(["eval", "image", str(photos), "--codecs", "webp,jpeg", "--workers", "0",
                 "--out", str(tmp_path / "out")]) == 0
    assert "against **webp**" in (tmp_path / "out" / "bdrate.md").read_text()

    assert rd_image.default_anchor(["ncodec:hyperprior", "jpeg", "webp"]) == "jpeg"
    assert rd_image.default_anchor(["jpeg", "avif"]) == "avif"
    assert rd_image.default_anchor(["ncodec:*"]) == "ncodec:" + ncodec.list_codecs(modality="image")[0]
    assert rd_video.default_anchor(["hnerv", "libx265", "libx264"]) == "libx264"
    assert rd_video.default_anchor(["nerv", "libx265"]) == "libx265"
    assert rd_video.default_anchor(["hnerv", "nerv"]) == "hnerv-medium"
    assert rd_video.default_anchor(["hnerv", "nerv"], "fast", 6, None, 10) == "hnerv-fast-6bit-qat10"
    assert rd_audio.default_anchor(["ncodec:mdct", "aac", "mp3"]) == "aac"
    assert rd_audio.default_anchor(["ncodec:mdct"]) == "ncodec-mdct"
    opus = tmp_path / "opus.json"
    opus.write_text(json.dumps({"name": "opus", "results": {}}))
    assert rd_audio.default_anchor(["ncodec:mdct"], [opus]) == "opus"      # a reference curve anchors too
    avif = tmp_path / "avif.json"
    avif.write_text(json.dumps({"name": "avif", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30, 33]}}))
    assert rd_image.default_anchor(["ncodec:slice", "jpeg"], [avif]) == "avif"
