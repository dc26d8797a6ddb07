"""The lossless image codec (a model fitted to each image, exact range coding)."""
