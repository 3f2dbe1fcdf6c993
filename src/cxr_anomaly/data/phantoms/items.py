"""The built-in dataset: which phantom each split's item is, drawn from one master seed, and
rendering items at a size.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cxr_anomaly.data.phantoms.anatomy import BoolArray
from cxr_anomaly.data.phantoms.findings import ANOMALY_TYPES, DEFAULT_DIFFICULTY
from cxr_anomaly.data.phantoms.phantom import Phantom, make_phantom

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val_normal", "test")
"""The split names of :func:`synthetic_items`."""


@dataclass(frozen=True)
class SyntheticSpec:
    """A labelled synthetic dataset, fully determined by these numbers.

    Attributes:
        n_train: normal training images.
        n_val_normal: normal validation images (early stopping, calibration).
        n_test_normal: normal test images.
        n_test_abnormal: abnormal test images; the anomaly types are cycled evenly.
        difficulty: anomaly difficulty, 0 (obvious) to 1 (subtle).
        seed: master seed; every image's own seed is derived from it.
    """

    n_train: int = 1000
    n_val_normal: int = 200
    n_test_normal: int = 200
    n_test_abnormal: int = 200
    difficulty: float = DEFAULT_DIFFICULTY
    seed: int = 0


@dataclass(frozen=True)
class SyntheticItem:
    """One image of a :class:`SyntheticSpec`, before rendering.

    Attributes:
        item_id: ``"<split>-<index:05d>"``, e.g. ``"train-00000"`` or ``"test-00007"``.
        split: ``"train"``, ``"val_normal"`` or ``"test"``.
        seed: the image's seed for :func:`make_phantom`; distinct across all items of a spec.
        anomaly: ``None`` for a normal image, else one of :data:`ANOMALY_TYPES`.
    """

    item_id: str
    split: str
    seed: int
    anomaly: str | None

    @property
    def is_normal(self) -> bool:
        """Whether the image has no anomaly."""
        return self.anomaly is None


def _item_seed(master: int, stream: str, index: int, attempt: int = 0) -> int:
    """A 63-bit seed from a hash of ``(master seed, stream, index)``: stable and collision-free
    in practice; the rare collision is resolved with ``attempt``."""
    key = f"cxr-phantom|{master}|{stream}|{index}|{attempt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def synthetic_items(spec: SyntheticSpec) -> list[SyntheticItem]:
    """List the images of a spec (no rendering): train, val_normal, then test items.

    The test split mixes normal and abnormal images in a seeded order. Image seeds come from a hash
    of the spec seed, the stream and the index, so the test patients never reappear in training,
    and changing one split's count leaves the other splits' images unchanged.

    Args:
        spec: the dataset description.

    Returns:
        The items, ``n_train + n_val_normal + n_test_normal + n_test_abnormal`` of them.
    """
    counts = (spec.n_train, spec.n_val_normal, spec.n_test_normal, spec.n_test_abnormal)
    if min(counts) < 0:
        raise ValueError(f"item counts must be non-negative, got {counts}")
    used: set[int] = set()

    def seed_of(stream: str, index: int) -> int:
        attempt = 0
        seed = _item_seed(spec.seed, stream, index)
        while seed in used:
            attempt += 1
            seed = _item_seed(spec.seed, stream, index, attempt)
        used.add(seed)
        return seed

    items = [
        SyntheticItem(f"train-{i:05d}", "train", seed_of("train", i), None)
        for i in range(spec.n_train)
    ]
    items += [
        SyntheticItem(f"val_normal-{i:05d}", "val_normal", seed_of("val_normal", i), None)
        for i in range(spec.n_val_normal)
    ]
    test: list[tuple[int, str | None]] = [
        (seed_of("test_normal", i), None) for i in range(spec.n_test_normal)
    ]
    test += [
        (seed_of("test_abnormal", i), ANOMALY_TYPES[i % len(ANOMALY_TYPES)])
        for i in range(spec.n_test_abnormal)
    ]
    order = np.random.default_rng(_item_seed(spec.seed, "test_order", 0)).permutation(len(test))
    items += [
        SyntheticItem(f"test-{k:05d}", "test", test[j][0], test[j][1])
        for k, j in enumerate(order.tolist())
    ]
    return items


def render_item(item: SyntheticItem, size: int, difficulty: float) -> Phantom:
    """Render one item of :func:`synthetic_items` (see :func:`make_phantom`)."""
    return make_phantom(size, item.seed, item.anomaly, difficulty)


def render_items(
    items: list[SyntheticItem], size: int, difficulty: float
) -> tuple[npt.NDArray[np.float32], BoolArray]:
    """Render many items into stacked arrays.

    Args:
        items: from :func:`synthetic_items`.
        size: image side in pixels.
        difficulty: anomaly difficulty in [0, 1].

    Returns:
        ``(images, masks)``: ``(n, size, size)`` float32 and bool.
    """
    images = np.empty((len(items), size, size), np.float32)
    masks = np.zeros((len(items), size, size), bool)
    for i, item in enumerate(items):
        phantom = render_item(item, size, difficulty)
        images[i] = phantom.image
        masks[i] = phantom.mask
    logger.debug("rendered %d phantoms at %dx%d", len(items), size, size)
    return images, masks
