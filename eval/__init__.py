"""Evaluation: metrics, Bjøntegaard deltas, classical codecs, RD sweeps and plots."""
from importlib import import_module

_EXPORTS = {"bd_psnr": ".bdrate", "bd_rate": ".bdrate", "available_codecs": ".classical", "get_codec": ".classical",
            "bpp": ".metrics", "ms_ssim": ".metrics", "psnr": ".metrics", "plot_rd": ".plot",
            "read_curves": ".rd_image", "run_image_eval": ".rd_image"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The public names, imported on first use (each command loads only the modules it runs)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
