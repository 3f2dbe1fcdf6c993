"""The yardstick: several findings on real anatomy, pneumonia on two fixed halves, the phantoms.

:mod:`.insertions` renders findings into real normal radiographs with exact masks;
:mod:`.halves` holds the fixed ``choose``/``confirm`` split of a labelled validation set;
:mod:`.measure` scores one trained run on all of it.
"""
