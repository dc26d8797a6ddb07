"""Evaluation: metrics, Bjøntegaard deltas, classical codecs, RD sweeps and plots."""
from ..registry import lazy_exports

_EXPORTS = {"bd_psnr": ".bdrate", "bd_rate": ".bdrate", "available_codecs": ".classical", "get_codec": ".classical",
            "bpp": ".metrics", "ms_ssim": ".metrics", "psnr": ".metrics", "plot_rd": ".plot",
            "read_curves": ".rd_image", "run_image_eval": ".rd_image"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)   # public names imported on first use
