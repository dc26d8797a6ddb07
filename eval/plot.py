"""Rate-distortion plots of CompressAI-layout JSON files (and the anchors' ``{name: [[bpp, psnr]]}`` files)."""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import atomic_output  # noqa: E402
from .rd_image import read_curves  # noqa: E402

_LABELS = {"bpp": "bits per pixel", "kbps": "kbit/s", "si-sdr": "SI-SDR (dB)", "mel-distance": "mel distance",
           "visqol": "ViSQOL MOS-LQO", "pesq-wb": "PESQ-WB", "stoi": "STOI",
           "psnr-rgb": "PSNR-RGB (dB)", "ms-ssim-rgb": "MS-SSIM (RGB)", "ms-ssim-db-rgb": "MS-SSIM (dB)",
           "encoding_time": "encoding time (s)", "decoding_time": "decoding time (s)"}


def plot_rd(json_paths, out_path: Path, metric: str = "psnr-rgb", title: str | None = None,
            rate: str = "bpp") -> Path:
    """Draw ``rate`` (bpp, or e.g. kbps for audio) against ``metric`` for every curve of the given JSON
    files into one PNG or SVG.

    The format follows ``out_path``'s suffix. Curves without ``metric`` are skipped with a warning;
    raises ValueError when none has it or the suffix is neither .png nor .svg."""
    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"plot to a .png or .svg file, not {out_path.name!r}")
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    drawn = 0
    for path in json_paths:
        for name, res in read_curves(path).items():
            if metric not in res:
                warnings.warn(f"{path}: curve {name!r} has no {metric!r} values; skipped", stacklevel=2)
                continue
            points = sorted((x, y) for x, y in zip(res[rate], res[metric]) if y is not None)
            ours = name.startswith("ncodec")       # ncodec's curves solid, everything else dashed
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", ms=3, label=name,
                    linestyle="-" if ours else "--", linewidth=2 if ours else 1.2)
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no curve with {metric!r} values in {', '.join(map(str, json_paths))}")
    ax.set_xlabel(_LABELS.get(rate, rate))
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_path, force=True) as tmp:
        fig.savefig(tmp, format=out_path.suffix[1:])     # .png or .svg, checked above
    plt.close(fig)
    return out_path
