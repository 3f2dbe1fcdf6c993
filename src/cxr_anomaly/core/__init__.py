"""The bottom floor, importing no other layer: typed configs, atomic writes, hardware facts,
size-aware filters and the z-score.
"""
