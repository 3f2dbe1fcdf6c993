"""Synthetic chest X-ray phantoms: the project's built-in dataset, with exact masks.

A phantom is made in three steps, all from ``np.random.default_rng(seed)``:

1. a *patient* (anatomy: body and soft-tissue outline, two lungs, heart and mediastinum, trachea,
   spine, clavicles, ribs, diaphragm domes, vessel markings fading towards the lung edge) and an
   *acquisition* (patient size, position and rotation, exposure, contrast window, gamma, fog,
   uneven exposure, blur and noise level);
2. a *density* map (the projected attenuation: larger = more tissue along the beam) drawn with
   soft-edged shapes in normalised patient coordinates, so the same seed gives the same patient
   at every size from 32 to 256 (sizes under 64 are rendered at twice the size and averaged);
3. the *exposure*: ``1 - exp(-k * density)``, window with a film-like shoulder, gamma, fog, blur
   and pixel noise.

An anomaly is a local density change added on top of the normal patient of the same seed: the
anatomy, the acquisition and the pixel noise come from generators that the anomaly's own random
draws never touch, so ``abnormal - normal`` is confined to the anomaly (plus the blur's few
pixels). The types, all inside the lungs, heart or body:

- ``opacity``: patchy consolidation, air spaces of a lobe-sized region filled (pneumonia-like);
- ``nodule``: a round, slightly lobulated nodule or mass;
- ``effusion``: fluid at a lung base, a meniscus rising laterally, the costophrenic angle blunted;
- ``cardiomegaly``: an enlarged heart shadow, grown to the patient's left and upwards;
- ``pneumothorax``: an apical-lateral rim of a lung without markings, darker, with a pleural line;
- ``foreign_object``: a tracheal or gastric tube, a central line, or a pacemaker with its lead.

The mask is where the image changed: where the anomaly's soft shape reaches one half, or where the
density changed by at least a tenth of its largest change; always inside :func:`body_mask`.

``difficulty`` runs from 0 (large, high-contrast anomalies) to 1 (small, faint ones); the default,
0.25, was chosen by measurement: a plain convolutional autoencoder trained for about a minute
(``benchmarks/phantoms.py``) reaches 0.72 AUROC on the default test set scored by its mean L1
error and 0.83 by the peak of its smoothed error map, while trivial intensity detectors stay near
0.5. The size and the contrast of every anomaly type both shrink as difficulty grows.

Example:
    >>> p = make_phantom(64, seed=3, anomaly="nodule")
    >>> p.image.shape, p.image.dtype, bool(p.mask.any())
    ((64, 64), dtype('float32'), True)

The package: :mod:`.anatomy` (the normal patient and its exposure), :mod:`.findings` (the six
findings), :mod:`.phantom` (one phantom and its mask), :mod:`.items` (the built-in dataset).
"""

from cxr_anomaly.data.phantoms.anatomy import MAX_SIZE, MIN_SIZE
from cxr_anomaly.data.phantoms.findings import ANOMALY_TYPES, DEFAULT_DIFFICULTY
from cxr_anomaly.data.phantoms.items import (
    SPLITS,
    SyntheticItem,
    SyntheticSpec,
    render_item,
    render_items,
    synthetic_items,
)
from cxr_anomaly.data.phantoms.phantom import Phantom, body_mask, make_phantom

__all__ = [
    "ANOMALY_TYPES",
    "DEFAULT_DIFFICULTY",
    "MAX_SIZE",
    "MIN_SIZE",
    "SPLITS",
    "Phantom",
    "SyntheticItem",
    "SyntheticSpec",
    "body_mask",
    "make_phantom",
    "render_item",
    "render_items",
    "synthetic_items",
]
