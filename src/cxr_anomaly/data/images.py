"""Read one chest X-ray image (DICOM, PNG or JPEG) into a float32 grey array in [0, 1].

Every reader in the project goes through :func:`read_image`, so that each image source (RSNA,
folders, manifests) sees the same pixels and the same errors. Anything that cannot be read as a
single grey image raises :class:`ImageReadError`, naming the file and the reason.

Scaling rules:

* DICOM: the modality LUT (RescaleSlope/RescaleIntercept) is applied, then, when asked, the VOI LUT
  Sequence or the WindowCenter/WindowWidth of the file (or an explicit window), which maps the
  window to [0, 1]. Without a window the image's own range is min-max scaled to [0, 1] (a constant
  image becomes all zeros). All of this is done in float64 from the stored integers, so 12- and
  16-bit images keep their full precision. MONOCHROME1 images are inverted so that high values are
  bright, as in MONOCHROME2. Compressed pixel data is decoded by pydicom's plugins: Pillow (JPEG
  Baseline) and pylibjpeg with its libjpeg, openjpeg and RLE plugins (JPEG Extended 12-bit, JPEG
  Lossless, JPEG-LS lossless and near-lossless, JPEG 2000, RLE); deflated files are inflated by
  pydicom. A one-frame enhanced object reads like a plain one (its rescale and window taken from
  its functional groups); a true multi-frame file is refused.
* PNG/JPEG (and other Pillow formats): 8-bit values are divided by 255 and 16-bit values by 65535;
  no min-max scaling. Colour images whose channels are equal (grey content stored as RGB) become
  grey; truly coloured images are refused.

Example:
    >>> image = read_image("patient.dcm")  # doctest: +SKIP
    >>> image.pixels.shape, image.pixels.dtype, image.meta.view_position  # doctest: +SKIP
    ((1024, 1024), dtype('float32'), 'PA')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageMeta",
    "ImageReadError",
    "LoadedImage",
    "ReadOptions",
    "read_image",
    "resize_image",
    "to_grey",
]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".dcm", ".dicom", ".png", ".jpg", ".jpeg"})
"""File suffixes (lower case) that folder sources look for. Reading itself ignores the suffix."""

#: Largest difference between colour channels (on the [0, 1] scale) still counted as grey:
#: grey JPEGs stored as RGB carry small chroma errors.
COLOUR_TOLERANCE: float = 2.0 / 255.0

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# First tag of a DICOM stream without preamble: group 0x0002 or 0x0008, little or big endian.
_DICOM_NO_PREAMBLE_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
# Pillow formats accepted besides PNG and JPEG (identified by content, never by suffix).
_PILLOW_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")  # multi-picture JPEGs (MPO) open as JPEG
_PILLOW_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}
_NOT_AN_IMAGE = "not a DICOM/PNG/JPEG image (content not recognised)"


class ImageReadError(ValueError):
    """One typed error for every unreadable input; the message names the file and the reason.

    Args:
        path: The file (or array source name) that could not be read.
        reason: Why it could not be read.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with both arguments (data-loader workers send errors between processes)."""
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class ImageMeta:
    """What was learned about an image while reading it.

    Attributes:
        path: The file read.
        format: ``"dicom"``, ``"png"``, ``"jpeg"`` or another Pillow format name, lower case.
        original_size: ``(height, width)`` as stored.
        patient_id: DICOM PatientID when present.
        view_position: DICOM ViewPosition (e.g. ``"PA"``, ``"AP"``) when present.
        photometric: DICOM PhotometricInterpretation, or the Pillow mode.
        bits_stored: DICOM BitsStored, or the bit depth of the Pillow mode.
    """

    path: str
    format: str
    original_size: tuple[int, int]
    patient_id: str | None = None
    view_position: str | None = None
    photometric: str | None = None
    bits_stored: int | None = None


@dataclass(frozen=True)
class LoadedImage:
    """An image as read: ``pixels`` is (H, W) float32 in [0, 1], C-contiguous."""

    pixels: np.ndarray
    meta: ImageMeta


@dataclass(frozen=True)
class ReadOptions:
    """How to read images.

    Attributes:
        apply_voi_lut: Use the DICOM VOI LUT Sequence, or WindowCenter/WindowWidth, when present.
        window: Explicit ``(center, width)`` overriding the file's window (DICOM only, applied to
            the values after the modality LUT).
        max_pixels: Images with more pixels are refused (checked from the header before decoding).
    """

    apply_voi_lut: bool = True
    window: tuple[float, float] | None = None
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        if self.window is not None:
            center, width = self.window
            if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
                raise ValueError(f"window must be a finite (center, width > 0), got {self.window}")
        if self.max_pixels < 4:
            raise ValueError(f"max_pixels must be at least 4, got {self.max_pixels}")


def read_image(path: str | Path, options: ReadOptions | None = None) -> LoadedImage:
    """Read a DICOM, PNG or JPEG file as a grey float32 image in [0, 1].

    The format is found from the file's content, not its suffix.

    Args:
        path: The file to read.
        options: Reading options; the defaults when ``None``.

    Returns:
        The (H, W) float32 pixels in [0, 1] and the image's metadata.

    Raises:
        ImageReadError: For any file that cannot be read as one grey image (missing, empty,
            truncated, not an image, colour, multi-frame, too small, too large, undecodable).
    """
    options = options or ReadOptions()
    name = str(path)
    file = Path(path)
    try:
        if not file.exists():
            raise ImageReadError(name, "file not found")
        if file.is_dir():
            raise ImageReadError(name, "is a directory, not an image file")
        size = file.stat().st_size
        if size == 0:
            raise ImageReadError(name, "empty file (0 bytes)")
        with file.open("rb") as handle:
            head = handle.read(132)
    except ImageReadError:
        raise
    except OSError as exc:
        raise ImageReadError(name, f"cannot open file ({exc})") from exc

    try:
        if len(head) >= 132 and head[128:132] == b"DICM":
            image = _read_dicom(name, options, force=False)
        elif head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC):
            image = _read_pillow(name, options)
        elif head[:2] in _DICOM_NO_PREAMBLE_STARTS:
            image = _read_dicom(name, options, force=True)
        else:
            image = _read_pillow(name, options, unknown=True)
    except ImageReadError:
        raise
    except Exception as exc:  # Last safety net: corrupt headers fail in many places.
        raise ImageReadError(name, f"unreadable ({type(exc).__name__}: {exc})") from exc
    logger.debug("read %s (%s, %dx%d)", name, image.meta.format, *image.meta.original_size)
    return image


def to_grey(array: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Turn an in-memory image array into a grey float32 image in [0, 1].

    Scaling: ``uint8`` is divided by 255 and ``uint16`` by 65535; ``bool`` maps to 0/1. Float
    (and other integer) arrays already within [0, 1] are kept as they are; otherwise they are
    min-max scaled to [0, 1] (a constant array becomes all zeros).

    Channels: (H, W) is grey; (H, W, 1) is squeezed; (H, W, 2) is grey + alpha and (H, W, 4) is
    RGBA, the alpha being dropped; RGB whose channels agree within 2/255 becomes their mean.

    Args:
        array: An (H, W) or (H, W, C) array.
        source: A name for the array, used in error messages.

    Returns:
        A C-contiguous (H, W) float32 array in [0, 1].

    Raises:
        ImageReadError: For an empty, non-finite, coloured, too small or badly shaped array.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ImageReadError(source, f"expected an (H, W) or (H, W, C) array, got {array.shape}")
    if array.size == 0:
        raise ImageReadError(source, f"empty array of shape {array.shape}")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float64) / 255.0
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float64) / 65535.0
    elif array.dtype == np.bool_:
        scaled = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float64)
        if not np.isfinite(scaled).all():
            raise ImageReadError(source, "array contains NaN or infinite values")
        low, high = float(scaled.min()), float(scaled.max())
        if low < 0.0 or high > 1.0:
            scaled = _min_max(scaled)
    else:
        raise ImageReadError(source, f"unsupported array dtype {array.dtype}")
    return _finish(_merge_channels(scaled, source), source)


def resize_image(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a grey [0, 1] image to ``(size, size)``.

    Shrinking (in both directions) averages areas (Pillow BOX filter), so that fine detail is not
    aliased; otherwise Pillow's bilinear filter is used, which is also anti-aliased along an axis
    that shrinks. Non-square images are resized straight to a square, without cropping or padding,
    so their aspect ratio changes.

    Args:
        pixels: An (H, W) float image in [0, 1].
        size: The side of the output.

    Returns:
        A C-contiguous (size, size) float32 array clipped to [0, 1].

    Raises:
        ValueError: If ``size`` is not positive or ``pixels`` is not a non-empty 2-D array.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"expected a non-empty (H, W) array, got shape {pixels.shape}")
    height, width = pixels.shape
    source = np.ascontiguousarray(pixels, dtype=np.float32)
    if (height, width) == (size, size):
        out = source.copy()
    else:
        shrinking = height >= size and width >= size
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        out = np.asarray(Image.fromarray(source).resize((size, size), resample=resample))
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------- helpers


def _min_max(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own range; a constant array becomes zeros."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def _check_size(name: str, height: int, width: int, options: ReadOptions) -> None:
    """Refuse images smaller than 2x2 or larger than ``options.max_pixels``."""
    if height < 2 or width < 2:
        raise ImageReadError(name, f"image too small ({height}x{width}; at least 2x2 needed)")
    if height * width > options.max_pixels:
        raise ImageReadError(
            name,
            f"image enormous ({height}x{width} = {height * width} pixels, "
            f"more than max_pixels={options.max_pixels})",
        )


def _merge_channels(scaled: np.ndarray, name: str) -> np.ndarray:
    """(H, W[, C]) float in [0, 1] -> (H, W): drop alpha, refuse colour, average equal channels."""
    if scaled.ndim == 2:
        return scaled
    channels = scaled.shape[2]
    if channels in (1, 2):
        return scaled[:, :, 0]
    if channels not in (3, 4):
        raise ImageReadError(name, f"unsupported number of channels ({channels})")
    rgb = scaled[:, :, :3]
    spread = float((rgb.max(axis=2) - rgb.min(axis=2)).max())
    if spread > COLOUR_TOLERANCE + 1e-9:
        raise ImageReadError(
            name,
            f"colour image (channels differ by up to {spread * 255:.0f}/255); "
            "only grey images are supported",
        )
    return np.asarray(rgb.mean(axis=2))


def _finish(values: np.ndarray, name: str) -> np.ndarray:
    """Final checks shared by every path: 2-D, at least 2x2, finite, float32 in [0, 1]."""
    if values.ndim != 2:
        raise ImageReadError(name, f"expected a 2-D image, got shape {values.shape}")
    height, width = values.shape
    if height < 2 or width < 2:
        raise ImageReadError(name, f"image too small ({height}x{width}; at least 2x2 needed)")
    if not np.isfinite(values).all():
        raise ImageReadError(name, "image contains NaN or infinite values")
    return np.ascontiguousarray(np.clip(values, 0.0, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------- Pillow


def _read_pillow(name: str, options: ReadOptions, unknown: bool = False) -> LoadedImage:
    """Read a PNG/JPEG (or TIFF/BMP) file through Pillow."""
    try:
        with Image.open(name, formats=_PILLOW_FORMATS) as image:
            width, height = image.size
            _check_size(name, height, width, options)
            fmt = (image.format or "unknown").lower()
            mode = image.mode
            frames = int(getattr(image, "n_frames", 1))
            if frames > 1:
                logger.warning("%s has %d frames; reading the first", name, frames)
            image.load()
            array = _pillow_to_array(image, name)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(name, f"image enormous ({exc})") from exc
    except UnidentifiedImageError as exc:
        reason = _NOT_AN_IMAGE if unknown else f"cannot identify image ({exc})"
        raise ImageReadError(name, reason) from exc
    except Exception as exc:  # Pillow/numpy raise many types for broken files.
        raise ImageReadError(name, f"cannot decode {type(exc).__name__}: {exc}") from exc
    if fmt == "mpo":
        fmt = "jpeg"
    meta = ImageMeta(
        path=name,
        format=fmt,
        original_size=(height, width),
        photometric=mode,
        bits_stored=_PILLOW_BITS.get(mode, 8),
    )
    return LoadedImage(pixels=array, meta=meta)


def _pillow_to_array(image: Image.Image, name: str) -> np.ndarray:
    """Decoded Pillow image -> (H, W) float32 in [0, 1]."""
    mode = image.mode
    if mode == "1":
        return _finish(np.asarray(image.convert("L"), dtype=np.float64) / 255.0, name)
    if mode.startswith("I;16"):
        return _finish(np.asarray(image).astype(np.float64) / 65535.0, name)
    if mode == "I":
        values = np.asarray(image).astype(np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(name, "32-bit integer image outside the 16-bit range")
        return _finish(values / 65535.0, name)
    if mode == "F":
        return to_grey(np.asarray(image, dtype=np.float32), name)
    if mode in ("L", "LA", "La"):
        return _finish(np.asarray(image.getchannel(0), dtype=np.float64) / 255.0, name)
    # Palette, RGB(A), CMYK, YCbCr, ...: convert to RGB, then test that the channels agree.
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return _finish(_merge_channels(rgb, name), name)


# --------------------------------------------------------------------------- DICOM


#: pydicom logs each failing decoder plugin's traceback here; its reasons reach the error anyway.
_DECODER_LOGGER = "pydicom.pixels.decoders.base"


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence one logger for the duration of the block."""
    logger = logging.getLogger(logger_name)
    was_disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was_disabled


def _read_dicom(name: str, options: ReadOptions, force: bool) -> LoadedImage:
    """Read a single-frame grey DICOM file."""
    # Pass 1: the header only, to refuse bad or enormous images before reading pixel bytes.
    try:
        header = pydicom.dcmread(name, stop_before_pixels=True, force=force)
    except InvalidDicomError as exc:
        reason = _NOT_AN_IMAGE if force else f"invalid DICOM ({exc})"
        raise ImageReadError(name, reason) from exc
    except Exception as exc:
        reason = _NOT_AN_IMAGE if force else f"cannot parse DICOM ({type(exc).__name__}: {exc})"
        raise ImageReadError(name, reason) from exc
    if force and "Rows" not in header and "SOPClassUID" not in header:
        raise ImageReadError(name, _NOT_AN_IMAGE)
    meta = _dicom_meta(name, header)
    _check_dicom_header(name, header, options)

    # Pass 2: the whole file, then decode.
    try:
        ds = pydicom.dcmread(name, force=force)
    except Exception as exc:
        raise ImageReadError(name, f"cannot parse DICOM ({type(exc).__name__}: {exc})") from exc
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(name, "DICOM has no pixel data")
    transfer_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        with _quiet(_DECODER_LOGGER):
            stored = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types for truncated/undecodable data.
        raise ImageReadError(
            name,
            f"cannot decode pixel data (transfer syntax {transfer_syntax}): "
            f"{type(exc).__name__}: {exc}",
        ) from exc
    if stored.shape != meta.original_size:
        raise ImageReadError(
            name, f"decoded pixel array has shape {stored.shape}, expected {meta.original_size}"
        )
    _flatten_functional_groups(ds)
    try:
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        scaled = _dicom_scale(name, values, ds, options)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(
            name, f"cannot apply modality/VOI LUT ({type(exc).__name__}: {exc})"
        ) from exc
    return LoadedImage(pixels=_finish(scaled, name), meta=meta)


def _dicom_meta(name: str, ds: pydicom.Dataset) -> ImageMeta:
    """Metadata from a DICOM header."""
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if rows is None or columns is None:
        raise ImageReadError(name, "DICOM has no Rows/Columns (not an image)")

    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        if value is None:
            return None
        return str(value).strip() or None

    bits = ds.get("BitsStored")
    return ImageMeta(
        path=name,
        format="dicom",
        original_size=(int(rows), int(columns)),
        patient_id=text("PatientID"),
        view_position=text("ViewPosition"),
        photometric=text("PhotometricInterpretation"),
        bits_stored=int(bits) if bits is not None else None,
    )


def _check_dicom_header(name: str, ds: pydicom.Dataset, options: ReadOptions) -> None:
    """Refuse colour, multi-frame, too small and enormous DICOMs from the header."""
    _check_size(name, int(ds.Rows), int(ds.Columns), options)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(
            name,
            f"colour DICOM ({photometric}, {samples} samples per pixel); "
            "only MONOCHROME1/MONOCHROME2 are supported",
        )
    frames_value = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames_value or 1)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(name, f"bad NumberOfFrames {frames_value!r}") from exc
    if frames != 1:
        raise ImageReadError(
            name,
            f"multi-frame DICOM ({frames} frames): a radiograph is one frame, and a series of "
            "frames (cine, tomosynthesis, a dose grid) is not an image the models score; save "
            "the frame to score as its own file",
        )


def _flatten_functional_groups(ds: pydicom.Dataset) -> None:
    """Copy a one-frame enhanced object's rescale and window from its functional groups.

    Enhanced (multi-frame IOD) images such as Enhanced DX keep ``RescaleSlope`` and the window
    inside ``SharedFunctionalGroupsSequence`` or ``PerFrameFunctionalGroupsSequence[0]`` rather
    than at the top level, where the modality and VOI transforms look for them. Top-level values,
    when present, win.
    """
    groups = [
        group[0]
        for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")
        if (group := ds.get(keyword))
    ]
    for group in groups:
        for sequence, keys in (
            ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
            ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
        ):
            items = group.get(sequence)
            if not items:
                continue
            for key in keys:
                if key in items[0] and key not in ds:
                    setattr(ds, key, items[0].get(key))


def _dicom_scale(
    name: str, values: np.ndarray, ds: pydicom.Dataset, options: ReadOptions
) -> np.ndarray:
    """Modality-LUT values -> [0, 1]: explicit window, VOI LUT, file window or min-max."""
    monochrome1 = str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"
    scaled: np.ndarray | None = None
    if options.window is not None:
        scaled = _window(values, *options.window, function="LINEAR")
    elif options.apply_voi_lut:
        if ds.get("VOILUTSequence"):
            scaled = _voi_lut(values, ds)
        else:
            file_window = _file_window(name, ds)
            if file_window is not None:
                scaled = _window(values, *file_window)
    if scaled is None:
        if float(values.max()) <= float(values.min()):
            return np.zeros_like(values)  # Constant image: zeros, whatever the photometry.
        scaled = _min_max(values)
    return 1.0 - scaled if monochrome1 else scaled


def _first(value: Any) -> float:
    """First value of a possibly multi-valued DICOM number."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return float(value)


def _file_window(name: str, ds: pydicom.Dataset) -> tuple[float, float, str] | None:
    """The file's first (center, width, function), or ``None`` if absent or unusable."""
    center_value, width_value = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center_value is None or width_value is None:
        return None
    try:
        center, width = _first(center_value), _first(width_value)
    except (TypeError, ValueError, IndexError):
        logger.warning("%s: unreadable WindowCenter/WindowWidth; min-max scaling", name)
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    minimum_width = 0.0 if function == "LINEAR_EXACT" else 1.0
    if not (math.isfinite(center) and math.isfinite(width)) or width <= minimum_width:
        logger.warning("%s: unusable window (%s, %s); min-max scaling", name, center, width)
        return None
    return center, width, function


def _window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> Any:
    """DICOM VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT" or width <= 1.0:
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _voi_lut(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Apply the first VOI LUT of the sequence, scaled to [0, 1] by the LUT's own range."""
    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    entries = int(descriptor[0]) or 2**16
    first_map = int(descriptor[1])
    lut = np.asarray(apply_voi(np.arange(first_map, first_map + entries), ds), dtype=np.float64)
    mapped = np.asarray(apply_voi(np.rint(values).astype(np.int64), ds), dtype=np.float64)
    low, high = float(lut.min()), float(lut.max())
    if high <= low:
        return np.zeros_like(mapped)
    return (mapped - low) / (high - low)
