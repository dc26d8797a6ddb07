"""The ncodec command line end to end, including its error handling."""
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
