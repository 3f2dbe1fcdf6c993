"""VAE-GAN: torch networks (:mod:`.torch_model`) and the Lightning module
(:mod:`.lightning_model`).
"""
