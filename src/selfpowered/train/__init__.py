"""Training: feature cache, datasets, trainer."""
