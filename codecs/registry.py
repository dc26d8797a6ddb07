"""Where the modalities plug in: each modality's app module, found by name and imported on first use.

An app module (``ncodec.<modality>.app``) is what :mod:`ncodec.api` and the command line know of
a modality.  It must stay light to import (no torch, numpy or model code at its top level; those
are imported inside the functions that need them) and declares:

``CODECS``          codec name -> one-line description
``DEFAULT_CODEC``   the codec used when none is named
``DECODED_SUFFIX``  the usual suffix of a decoded file
``COMMANDS``        ``{"train": module, "eval": module}`` (those it has): modules with
                    ``add_arguments(parser)`` and ``run(args) -> exit code``
``encode_options()``, ``decode_options()``
                    its ``ncodec encode``/``decode`` flags as ``(flag, argparse keywords)``
``accepts(path)``, ``load_codec``, ``encode_file``, ``decode``, ``decode_file``, ``describe``
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from .errors import UsageError

APPS = {"image": "ncodec.image.app", "video": "ncodec.video.app", "audio": "ncodec.audio.app"}
MODALITIES = tuple(APPS)
# the decode flag that image and video share (each app lists it; the CLI adds it once)
PRECISION_OPTION = ("--precision", {"choices": ["float32", "bfloat16"],
                                    "help": "image and video: network precision (images: default float32 on CPU, "
                                            "bfloat16 on CUDA; video frames of 0.3 megapixels and more: bfloat16 "
                                            "where the CPU or GPU computes it natively, about 2x faster); any "
                                            "precision decodes any stream, results differ slightly"})


def app(modality: str):
    """The app module of ``modality``."""
    if modality not in APPS:
        raise UsageError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    return importlib.import_module(APPS[modality])


def apps() -> dict:
    """Every modality's app module, by modality."""
    return {m: app(m) for m in MODALITIES}


def option_dest(flag: str, kwargs: dict) -> str:
    """The keyword name of a modality option declared as ``(flag, argparse keywords)``."""
    return kwargs.get("dest", flag.lstrip("-").replace("-", "_"))


def assets_dir() -> Path:
    """Folder holding the shipped weights (``NCODEC_ASSETS`` overrides it)."""
    env = os.environ.get("NCODEC_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "assets"


def lazy_exports(package: str, exports: dict[str, str]):
    """A package's module ``__getattr__`` that imports its public names (name -> relative module) on
    first use, so that importing the package stays light."""
    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)
    return __getattr__
