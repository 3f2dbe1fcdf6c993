"""AnatPaste: torch networks (:mod:`.torch_model`), Lightning module (:mod:`.lightning_model`), its
augmentation (:mod:`.paste`).
"""
