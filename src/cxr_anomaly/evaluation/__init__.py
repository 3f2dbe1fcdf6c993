"""Measuring detectors: metrics, split scoring, references, robustness and the yardstick."""
