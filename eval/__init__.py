"""Evaluation: metrics, Bjøntegaard deltas, classical codecs, RD sweeps and plots."""
from .bdrate import bd_psnr, bd_rate
from .metrics import bpp, ms_ssim, psnr
from .plot import plot_rd
from .rd_image import run_image_eval

__all__ = ["bd_psnr", "bd_rate", "bpp", "ms_ssim", "psnr", "plot_rd", "run_image_eval"]
