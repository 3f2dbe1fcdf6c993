"""AnoDDPM: the Lightning module (:mod:`.lightning_model`), partial diffusion and simplex noise."""
