"""Pieces every model shares: the base interface, maps, EMA, Gaussians, uncertainty heads."""
