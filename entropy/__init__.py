"""Entropy models, exact fixed-point parameter paths and constriction range coding."""
from .coder import CODER_ID, EntropyCodingError, SymbolDecoder, SymbolEncoder, decode_symbols, encode_symbols
from .fixedpoint import ACT_FRAC, FixedPointMLP, FixedPointNet, from_fixed, to_fixed
from .models import FactorizedPrior, GaussianConditional, LogScaleGaussian
from .tables import TableSet, gaussian_scale_table, gaussian_tables

__all__ = [
    "CODER_ID", "EntropyCodingError", "SymbolDecoder", "SymbolEncoder", "decode_symbols", "encode_symbols",
    "ACT_FRAC", "FixedPointMLP", "FixedPointNet", "from_fixed", "to_fixed", "FactorizedPrior", "GaussianConditional",
    "LogScaleGaussian",
    "TableSet", "gaussian_scale_table", "gaussian_tables",
]
