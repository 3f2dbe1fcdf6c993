"""Data layer: image reading, dataset sources, splits, cache and Lightning data module."""
