"""Audio codec: a learned transform codec with an entropy model."""
