"""Evaluation: metrics, Bjøntegaard deltas, classical codecs, RD sweeps and plots."""
from .bdrate import bd_psnr, bd_rate
from .classical import available_codecs, get_codec
from .metrics import bpp, ms_ssim, psnr
from .plot import plot_rd
from .rd_image import read_curves, run_image_eval

__all__ = ["available_codecs", "bd_psnr", "bd_rate", "bpp", "get_codec", "ms_ssim", "plot_rd", "psnr", "read_curves",
           "run_image_eval"]
