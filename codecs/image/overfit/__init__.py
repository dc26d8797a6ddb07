"""The overfitted image codec (``--codec overfit``): a small decoder and latent grids fitted to each
image at encoding time (C3 / Cool-chic family)."""
