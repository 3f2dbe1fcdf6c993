"""Every common DICOM transfer syntax, on pydicom's own test files, read to pydicom's pixels.

Each compressed file is read by :func:`read_image` and compared with a reference: the same
dataset decoded by pydicom and saved uncompressed (Explicit VR Little Endian), read back through
the native path. For lossless syntaxes the pixels must also equal the uncompressed original
(``MR_small.dcm``). The two JPEG Lossless files are ``MR_small`` re-encoded once (see
``tests/data/make_jpeg_lossless.py``): pydicom ships no grey JPEG Lossless file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from cxr_anomaly.data.images import ImageReadError, read_image

DATA = Path(__file__).resolve().parent / "data"

#: (file, transfer syntax it must use, its uncompressed twin or None for lossy syntaxes).
SYNTAXES: list[tuple[str, str, str | None]] = [
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", "MR_small.dcm"),
    ("JPEGLSNearLossless_08.dcm", "1.2.840.10008.1.2.4.81", None),
    ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", None),
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", None),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90", "MR_small.dcm"),
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", None),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", "MR_small.dcm"),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99", None),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2", "MR_small.dcm"),
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2", "MR_small.dcm"),
]
LOCAL: list[tuple[str, str, str | None]] = [
    ("MR_small_jpeg_lossless_sv1.dcm", "1.2.840.10008.1.2.4.70", "MR_small.dcm"),
    ("MR_small_jpeg_lossless_p6.dcm", "1.2.840.10008.1.2.4.57", "MR_small.dcm"),
]


def _path(name: str) -> Path:
    local = DATA / name
    if local.is_file():
        return local
    found = get_testdata_file(name)
    if found is None:
        pytest.skip(f"pydicom test file {name} not installed")
    return Path(str(found))


def _decoded_copy(path: Path, out: Path) -> Path:
    """The dataset decoded by pydicom and saved uncompressed: the reference decoding."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    plain = Dataset()
    plain.update(ds)
    plain.file_meta = ds.file_meta
    plain.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    plain.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    plain["PixelData"].VR = "OW" if pixels.dtype.itemsize > 1 else "OB"
    if "NumberOfFrames" in plain:
        del plain.NumberOfFrames
    plain.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize(("name", "syntax", "twin"), SYNTAXES + LOCAL, ids=lambda v: str(v))
def test_transfer_syntax_reads_to_pydicoms_pixels(
    name: str, syntax: str, twin: str | None, tmp_path: Path
) -> None:
    path = _path(name)
    assert str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax
    image = read_image(path)
    assert image.pixels.dtype == np.float32
    assert 0.0 <= float(image.pixels.min()) < float(image.pixels.max()) <= 1.0
    reference = read_image(_decoded_copy(path, tmp_path / "plain.dcm"))
    np.testing.assert_array_equal(image.pixels, reference.pixels)
    if twin is not None:
        np.testing.assert_array_equal(image.pixels, read_image(_path(twin)).pixels)


def test_malformed_12_bit_jpeg_is_refused_with_the_decoders_reasons() -> None:
    # pydicom's JPEG-lossy.dcm holds a JPEG stream that every decoder rejects.
    with pytest.raises(ImageReadError, match=r"(?s)cannot decode pixel data .*4\.51.*libjpeg"):
        read_image(_path("JPEG-lossy.dcm"))


def test_one_frame_multiframe_object_reads_and_true_multiframe_is_refused(
    tmp_path: Path,
) -> None:
    ds = pydicom.dcmread(_path("MR_small.dcm"))
    ds.NumberOfFrames = 1
    one = tmp_path / "one.dcm"
    ds.save_as(one, enforce_file_format=True)
    np.testing.assert_array_equal(read_image(one).pixels, read_image(_path("MR_small.dcm")).pixels)
    with pytest.raises(ImageReadError, match=r"multi-frame DICOM \(15 frames\): a radiograph"):
        read_image(_path("rtdose.dcm"))


def test_enhanced_object_takes_rescale_and_window_from_functional_groups(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_path("MR_small.dcm"))
    for key in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if key in ds:
            delattr(ds, key)
    ds.NumberOfFrames = 1
    transform, window, group = Dataset(), Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 1, -100
    window.WindowCenter, window.WindowWidth = 700, 600
    group.PixelValueTransformationSequence = [transform]
    group.FrameVOILUTSequence = [window]
    ds.SharedFunctionalGroupsSequence = [group]
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    values = ds.pixel_array.astype(np.float64) - 100
    # DICOM linear window on the rescaled values: center 700, width 600.
    expected = np.clip((values - (700 - 0.5)) / (600 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(read_image(path).pixels, expected, atol=1e-6)
