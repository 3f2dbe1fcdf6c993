"""From raw model scores to calibrated decisions: fusions, trivial detectors, novelty, maps."""
