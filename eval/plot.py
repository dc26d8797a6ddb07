"""Rate-distortion plots of any CompressAI-layout JSON files."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_rd(json_paths, out_path: Path, metric: str = "psnr-rgb", title: str | None = None) -> Path:
    """Draw every curve (bpp vs ``metric``) into one PNG or SVG, chosen by suffix."""
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for p in json_paths:
        data = json.loads(Path(p).read_text())
        r = data["results"]
        if metric not in r:
            raise ValueError(f"{p} has no {metric!r} results")
        pts = sorted(zip(r["bpp"], r[metric]))
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, label=data.get("name", Path(p).stem))
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel({"psnr-rgb": "PSNR RGB (dB)", "ms-ssim-rgb": "MS-SSIM"}.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return Path(out_path)
