"""Anomaly detection models, a folder each, behind one interface (``components``); their registry
and presets.
"""
