"""Tests for the one image reader: real files, plus tiny DICOM/PNG/JPEG files made here."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cxr_anomaly.data.images import (
    SUPPORTED_SUFFIXES,
    ImageMeta,
    ImageReadError,
    LoadedImage,
    ReadOptions,
    read_image,
    resize_image,
    to_grey,
)

RSNA_STEMS = [
    "0004cfab-14fd-4e49-80ba-63a80b6bddd6",
    "00313ee0-9eaa-42f4-b0ab-c148ed3241cd",
    "00322d4d-1c29-4943-afc9-b6754be640eb",
    "003d8fa0-6bf1-40ed-b54c-ac657f8495c5",
    "00436515-870c-4b36-a041-de91049b9ab4",
    "00569f44-917d-4c86-a842-81832af98c30",
    "006cec2e-6ce2-4549-bffa-eadfcd1e9970",
    "00704310-78a8-4b38-8475-49f4573b2dbb",
    "008c19e8-a820-403a-930a-bc74a4053664",
    "009482dc-3db5-48d4-8580-5c89c4f01334",
    "009eb222-eabc-4150-8121-d5a6d06b8ebf",
    "00a85be6-6eb0-421d-8acf-ff2dc0007e8a",
    "00aecb01-a116-45a2-956c-08d2fa55433f",
    "00c0b293-48e7-4e16-ac76-9269ba535a62",
    "00d7c36e-3cdf-4df6-ac03-6c30cdc8e85b",
    "00f08de1-517e-4652-a04f-d1dc9ee48593",
]
SIIM_NAME = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
NIH_NAMES = ["00000001_000.png", "00027426_000.png"]


# --------------------------------------------------------------------------- helpers


def assert_valid_pixels(pixels: np.ndarray, shape: tuple[int, int]) -> None:
    assert pixels.shape == shape
    assert pixels.dtype == np.float32
    assert pixels.flags["C_CONTIGUOUS"]
    assert np.isfinite(pixels).all()
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0


def make_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **tags: object,
) -> Path:
    """Write a small DICOM with the given pixels (2-D, or (H, W, 3) for RGB) and extra tags."""
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(str(path), Dataset(), file_meta=file_meta, preamble=b"\0" * 128)
    ds.SOPClassUID = file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = "synthetic-001"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
    ds.PixelData = pixel_data if pixel_data is not None else pixels.tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(shape: tuple[int, int], low: int, high: int, dtype: type) -> np.ndarray:
    """A left-to-right ramp from ``low`` to ``high``."""
    row = np.linspace(low, high, shape[1]).round()
    return np.ascontiguousarray(np.broadcast_to(row, shape).astype(dtype))


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path, format="PNG")
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_header_only(ihdr: bytes) -> bytes:
    """A PNG whose header is complete but whose image data stops after a few bytes."""
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)


def assert_read_error(path: Path, match: str, options: ReadOptions | None = None) -> None:
    """``read_image`` raises ImageReadError naming the file, with ``match`` in the reason."""
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(path, options)
    assert path.name in str(info.value)
    assert info.value.path == str(path)


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("stem", RSNA_STEMS)
def test_rsna_sample_dicoms(rsna_dir: Path, stem: str) -> None:
    path = rsna_dir / "sample" / "stage_2_train_images" / f"{stem}.dcm"
    image = read_image(path)
    assert_valid_pixels(image.pixels, (1024, 1024))
    assert image.pixels.max() - image.pixels.min() > 0.5
    assert image.meta.format == "dicom"
    assert image.meta.original_size == (1024, 1024)
    assert image.meta.patient_id == stem
    assert image.meta.view_position in {"AP", "PA"}
    assert image.meta.photometric == "MONOCHROME2"
    assert image.meta.bits_stored == 8


def test_rsna_sample_has_all_listed_files(rsna_dir: Path) -> None:
    folder = rsna_dir / "sample" / "stage_2_train_images"
    assert sorted(p.stem for p in folder.glob("*.dcm")) == RSNA_STEMS


def test_siim_dicom(dicom_fixtures_dir: Path) -> None:
    image = read_image(dicom_fixtures_dir / SIIM_NAME)
    assert_valid_pixels(image.pixels, (1024, 1024))
    assert image.pixels.max() - image.pixels.min() > 0.5
    assert image.meta.view_position == "PA"
    assert image.meta.patient_id == "16d7f894-55d7-4d95-8957-d18987f0e981"


@pytest.mark.parametrize("name", NIH_NAMES)
def test_nih_pngs(dicom_fixtures_dir: Path, name: str) -> None:
    path = dicom_fixtures_dir / name
    image = read_image(path)
    assert_valid_pixels(image.pixels, (512, 512))
    assert image.meta.format == "png"
    assert image.meta.photometric == "L"
    assert image.meta.patient_id is None
    # 8-bit PNGs are divided by 255, not min-max scaled.
    expected = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    np.testing.assert_allclose(image.pixels, expected, atol=1e-7)


def test_zhanglab_rgb_jpeg_becomes_grey(zhanglab_dir: Path) -> None:
    path = sorted((zhanglab_dir / "NORMAL").glob("*.jpeg"))[0]
    assert Image.open(path).mode == "RGB"
    image = read_image(path)
    assert_valid_pixels(image.pixels, (224, 224))
    assert image.meta.format == "jpeg"
    assert image.meta.photometric == "RGB"
    expected = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[..., 0] / 255.0
    np.testing.assert_allclose(image.pixels, expected, atol=2.0 / 255.0)


# --------------------------------------------------------------------------- synthetic DICOMs


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    data = ramp((16, 20), 100, 3000, np.uint16)
    mono2 = read_image(make_dicom(tmp_path / "m2.dcm", data, bits_stored=12))
    mono1 = read_image(
        make_dicom(tmp_path / "m1.dcm", data, photometric="MONOCHROME1", bits_stored=12)
    )
    assert_valid_pixels(mono1.pixels, (16, 20))
    assert mono2.pixels[0, 0] == 0.0 and mono2.pixels[0, -1] == 1.0
    np.testing.assert_allclose(mono1.pixels, 1.0 - mono2.pixels, atol=1e-7)
    assert mono1.meta.photometric == "MONOCHROME1"


@pytest.mark.parametrize("bits_stored", [12, 16])
def test_high_bit_depth_kept_at_full_precision(tmp_path: Path, bits_stored: int) -> None:
    top = 2**bits_stored - 1
    data = np.full((8, 8), top // 2, dtype=np.uint16)
    data[0, 0], data[0, 1] = 0, top
    data[1, 1] = top // 2 + 1  # differs by one from the rest: lost with an 8-bit intermediate
    image = read_image(make_dicom(tmp_path / "deep.dcm", data, bits_stored=bits_stored))
    assert image.meta.bits_stored == bits_stored
    assert image.pixels[1, 1] > image.pixels[2, 2]
    np.testing.assert_allclose(image.pixels[1, 1] - image.pixels[2, 2], 1.0 / top, rtol=1e-3)
    np.testing.assert_allclose(image.pixels, data / top, atol=1e-7)


def test_rescale_slope_intercept_applied(tmp_path: Path) -> None:
    data = np.array([[0, 50], [550, 300]], dtype=np.uint16)
    data = np.kron(data, np.ones((2, 2), dtype=np.uint16))  # 4x4
    window = ReadOptions(window=(0.5, 2001.0))  # y = value / 2000 + 0.5, for value in [-1000, 1000]
    plain = read_image(make_dicom(tmp_path / "plain.dcm", data), window)
    rescaled = read_image(
        make_dicom(tmp_path / "rescaled.dcm", data, RescaleSlope=2, RescaleIntercept=-100), window
    )
    # Stored 0, 50, 550, 300 -> modality values -100, 0, 1000, 500.
    np.testing.assert_allclose(rescaled.pixels[::2, ::2], [[0.45, 0.5], [1.0, 0.75]], atol=1e-6)
    np.testing.assert_allclose(plain.pixels[::2, ::2], [[0.5, 0.525], [0.775, 0.65]], atol=1e-6)


def test_signed_pixels(tmp_path: Path) -> None:
    data = ramp((6, 11), -1000, 1000, np.int16)
    image = read_image(make_dicom(tmp_path / "signed.dcm", data))
    np.testing.assert_allclose(image.pixels[0], np.linspace(0.0, 1.0, 11), atol=1e-6)


def test_file_window_applied_and_switchable(tmp_path: Path) -> None:
    data = ramp((4, 101), 0, 1000, np.uint16)
    path = make_dicom(tmp_path / "win.dcm", data, WindowCenter=500, WindowWidth=201)
    windowed = read_image(path).pixels[0]
    # DICOM linear window: values below 400 are black, above 600 white, linear between.
    assert (windowed[:40] == 0.0).all() and (windowed[61:] == 1.0).all()
    np.testing.assert_allclose(windowed[50], (500 - 499.5) / 200 + 0.5, atol=1e-6)
    unwindowed = read_image(path, ReadOptions(apply_voi_lut=False)).pixels[0]
    np.testing.assert_allclose(unwindowed, np.linspace(0.0, 1.0, 101), atol=1e-6)


def test_explicit_window_overrides_file_window(tmp_path: Path) -> None:
    data = ramp((4, 101), 0, 1000, np.uint16)
    path = make_dicom(tmp_path / "win.dcm", data, WindowCenter=500, WindowWidth=201)
    pixels = read_image(path, ReadOptions(window=(250.5, 501.0))).pixels[0]
    np.testing.assert_allclose(pixels[:51], np.linspace(0.0, 1.0, 51), atol=1e-6)
    assert (pixels[51:] == 1.0).all()


def test_voi_lut_sequence(tmp_path: Path) -> None:
    data = ramp((4, 256), 0, 255, np.uint8)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.add_new(0x00283006, "US", [int(v) for v in (255 - np.arange(256)) * 100])  # LUTData
    path = make_dicom(tmp_path / "lut.dcm", data, VOILUTSequence=[item])
    with_lut = read_image(path).pixels[0]
    np.testing.assert_allclose(with_lut, np.linspace(1.0, 0.0, 256), atol=1e-6)
    without = read_image(path, ReadOptions(apply_voi_lut=False)).pixels[0]
    np.testing.assert_allclose(without, np.linspace(0.0, 1.0, 256), atol=1e-6)


def test_constant_dicom_is_zeros_not_nan(tmp_path: Path) -> None:
    data = np.full((5, 5), 700, dtype=np.uint16)
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        path = make_dicom(tmp_path / f"{photometric}.dcm", data, photometric=photometric)
        pixels = read_image(path).pixels
        assert_valid_pixels(pixels, (5, 5))
        assert (pixels == 0.0).all()


def test_dicom_without_preamble(tmp_path: Path) -> None:
    data = ramp((4, 9), 0, 800, np.uint16)
    full = make_dicom(tmp_path / "full.dcm", data).read_bytes()
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(full[132:])  # no preamble, no "DICM"
    np.testing.assert_allclose(read_image(bare).pixels[0], np.linspace(0.0, 1.0, 9), atol=1e-6)


def test_format_from_content_not_suffix(tmp_path: Path) -> None:
    dicom = make_dicom(tmp_path / "x.png", ramp((4, 4), 0, 9, np.uint8))
    png = save_png(tmp_path / "y.dcm", ramp((4, 4), 0, 9, np.uint8))
    png_as_jpg = tmp_path / "z.jpg"
    png_as_jpg.write_bytes(png.read_bytes())
    assert read_image(dicom).meta.format == "dicom"
    assert read_image(png).meta.format == "png"
    assert read_image(png_as_jpg).meta.format == "png"


# --------------------------------------------------------------------------- DICOM errors


def test_truncated_dicom(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "cut.dcm", ramp((64, 64), 0, 4000, np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    assert_read_error(path, "pixel data")


def test_dicom_cut_inside_header(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "cut.dcm", ramp((8, 8), 0, 4000, np.uint16))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "cut.dcm" in str(info.value)


def test_dicom_missing_pixel_data(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "nopix.dcm", ramp((8, 8), 0, 255, np.uint8))
    ds = dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    assert_read_error(path, "no pixel data")


def test_rgb_dicom_refused(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    path = make_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    assert_read_error(path, "colour DICOM")


def test_multiframe_dicom_refused(tmp_path: Path) -> None:
    frames = np.zeros((2, 8, 8), dtype=np.uint8)
    path = make_dicom(
        tmp_path / "multi.dcm", frames[0], pixel_data=frames.tobytes(), NumberOfFrames=2
    )
    assert_read_error(path, "multi-frame")


def test_jpeg_syntax_holding_raw_bytes(tmp_path: Path) -> None:
    data = ramp((16, 16), 0, 255, np.uint8)
    path = make_dicom(
        tmp_path / "fakejpeg.dcm",
        data,
        transfer_syntax=JPEGBaseline8Bit,  # claims JPEG, holds raw bytes in one fragment
        pixel_data=encapsulate([data.tobytes()]),
    )
    assert_read_error(path, "cannot decode pixel data")


@pytest.mark.filterwarnings("ignore:The number of bytes of compressed pixel data")
def test_compressed_syntax_declared_for_native_data(tmp_path: Path) -> None:
    data = ramp((16, 16), 0, 255, np.uint8)
    path = make_dicom(tmp_path / "fakerle.dcm", data)
    raw = path.read_bytes()
    explicit = ExplicitVRLittleEndian.encode() + b"\0"
    assert raw.count(explicit) == 1
    path.write_bytes(raw.replace(explicit, RLELossless.encode() + b"\0"))  # same length
    assert_read_error(path, "cannot decode pixel data")


def test_enormous_dicom_refused_from_header(tmp_path: Path) -> None:
    # The header claims 5000x5000 but holds only a few bytes: refused before any decoding.
    path = make_dicom(
        tmp_path / "huge.dcm",
        np.zeros((5000, 5000), dtype=np.uint8),
        pixel_data=b"\0" * 16,
    )
    assert_read_error(path, "enormous", ReadOptions(max_pixels=1_000_000))
    assert_read_error(path, "pixel data")  # under the default limit it fails on decoding instead


@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (50, 1)])
def test_tiny_dicom_refused(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = make_dicom(tmp_path / "tiny.dcm", np.zeros(shape, dtype=np.uint8))
    assert_read_error(path, "too small")


# --------------------------------------------------------------------------- PNG / JPEG


def test_16bit_png_precision(tmp_path: Path) -> None:
    data = np.array([[0, 1000], [1001, 65535]], dtype=np.uint16)
    data = np.kron(data, np.ones((2, 2), dtype=np.uint16))
    image = read_image(save_png(tmp_path / "deep.png", data))
    assert image.meta.bits_stored == 16
    np.testing.assert_allclose(image.pixels, data / 65535.0, atol=1e-8)
    assert image.pixels[2, 0] > image.pixels[0, 2]


def test_8bit_png_not_min_max_scaled(tmp_path: Path) -> None:
    data = ramp((4, 4), 50, 100, np.uint8)
    pixels = read_image(save_png(tmp_path / "dim.png", data)).pixels
    np.testing.assert_allclose(pixels, data / 255.0, atol=1e-7)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P"])
def test_equal_channel_images_become_grey(tmp_path: Path, mode: str) -> None:
    grey = ramp((6, 6), 0, 250, np.uint8)
    path = tmp_path / f"grey_{mode}.png"
    Image.fromarray(grey).convert(mode).save(path)
    image = read_image(path)
    assert image.meta.photometric == mode
    np.testing.assert_allclose(image.pixels, grey / 255.0, atol=1e-7)


def test_grey_jpeg_stored_as_rgb(tmp_path: Path) -> None:
    grey = ramp((32, 32), 0, 255, np.uint8)
    path = tmp_path / "grey.jpg"
    Image.fromarray(grey).convert("RGB").save(path, quality=90)
    image = read_image(path)
    assert image.meta.format == "jpeg"
    np.testing.assert_allclose(image.pixels, grey / 255.0, atol=0.05)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_colour_image_refused(tmp_path: Path, suffix: str) -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 30
    path = tmp_path / f"colour{suffix}"
    Image.fromarray(rgb).save(path)
    assert_read_error(path, "colour image")


def test_colour_palette_png_refused(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:4, :, 1] = 255
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).convert("P").save(path)
    assert_read_error(path, "colour image")


@pytest.mark.parametrize("size", [(1, 1), (1, 40), (40, 1)])
def test_tiny_png_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    path = save_png(tmp_path / "tiny.png", np.zeros(size, dtype=np.uint8))
    assert_read_error(path, "too small")


def test_enormous_png_refused(tmp_path: Path) -> None:
    path = save_png(tmp_path / "big.png", np.zeros((100, 100), dtype=np.uint8))
    assert_read_error(path, "enormous", ReadOptions(max_pixels=5_000))
    assert read_image(path, ReadOptions(max_pixels=10_000)).pixels.shape == (100, 100)


def test_enormous_png_refused_from_header(tmp_path: Path) -> None:
    # A PNG header claiming 5000x5000 with no image data: refused before decoding.
    ihdr = struct.pack(">IIBBBBB", 5000, 5000, 8, 0, 0, 0, 0)
    path = tmp_path / "liar.png"
    path.write_bytes(png_header_only(ihdr))
    assert_read_error(path, "enormous", ReadOptions(max_pixels=1_000_000))
    assert_read_error(path, "cannot decode")


def test_pillow_decompression_bomb_refused(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(ihdr))
    assert_read_error(path, "enormous", ReadOptions(max_pixels=10**10))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_png_jpeg(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert path.name in str(info.value)


# --------------------------------------------------------------------------- any file


def test_text_renamed_dcm(tmp_path: Path) -> None:
    path = tmp_path / "notes.dcm"
    path.write_text("patient id, label\nabc, 1\n" * 20)
    assert_read_error(path, "not a DICOM/PNG/JPEG image")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    assert_read_error(path, "empty file")


def test_missing_file(tmp_path: Path) -> None:
    assert_read_error(tmp_path / "nowhere.dcm", "file not found")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.dcm"
    folder.mkdir()
    assert_read_error(folder, "directory")


def test_error_is_typed_and_picklable() -> None:
    error = ImageReadError(Path("/x/a.dcm"), "broken")
    assert isinstance(error, ValueError)
    assert str(error) == "/x/a.dcm: broken"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, str(copy)) == ("/x/a.dcm", "broken", "/x/a.dcm: broken")


def test_read_options_validated() -> None:
    with pytest.raises(ValueError):
        ReadOptions(window=(100.0, 0.0))
    with pytest.raises(ValueError):
        ReadOptions(max_pixels=0)


def test_public_types() -> None:
    assert {".dcm", ".dicom", ".png", ".jpg", ".jpeg"} == SUPPORTED_SUFFIXES
    image = LoadedImage(np.zeros((2, 2), np.float32), ImageMeta("a", "png", (2, 2)))
    assert image.meta.patient_id is None and image.meta.bits_stored is None


# --------------------------------------------------------------------------- to_grey


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 255], [51, 102]], np.uint8), [[0.0, 1.0], [0.2, 0.4]]),
        (np.array([[0, 65535], [1, 2]], np.uint16), [[0.0, 1.0], [1 / 65535, 2 / 65535]]),
        (np.array([[0.1, 0.2], [0.3, 0.4]], np.float64), [[0.1, 0.2], [0.3, 0.4]]),  # kept
        (np.array([[-1.0, 1.0], [0.0, 3.0]], np.float32), [[0.0, 0.5], [0.25, 1.0]]),  # min-max
        (np.full((2, 2), 7.0), [[0.0, 0.0], [0.0, 0.0]]),  # constant out of range -> zeros
        (np.array([[True, False], [False, True]]), [[1.0, 0.0], [0.0, 1.0]]),
        (np.array([[[0], [255]], [[255], [0]]], np.uint8), [[0.0, 1.0], [1.0, 0.0]]),
        (np.stack([np.array([[0, 255], [255, 0]], np.uint8)] * 3, -1), [[0.0, 1.0], [1.0, 0.0]]),
        (
            np.dstack([np.array([[0, 255], [255, 0]], np.uint8)] * 3 + [np.full((2, 2), 9)]),
            [[0.0, 1.0], [1.0, 0.0]],
        ),
    ],
    ids=["uint8", "uint16", "float01", "float-range", "constant", "bool", "hw1", "rgb", "rgba"],
)
def test_to_grey(array: np.ndarray, expected: list[list[float]]) -> None:
    grey = to_grey(array)
    assert_valid_pixels(grey, (2, 2))
    np.testing.assert_allclose(grey, expected, atol=1e-7)


def test_to_grey_tolerates_small_chroma_error() -> None:
    rgb = np.stack([np.full((4, 4), v, np.uint8) for v in (100, 102, 101)], axis=-1)
    np.testing.assert_allclose(to_grey(rgb), 101 / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.stack([np.zeros((4, 4)), np.ones((4, 4)), np.zeros((4, 4))], -1), "colour"),
        (np.zeros((0, 5), np.uint8), "empty"),
        (np.array([[0.0, np.nan], [0.5, 1.0]]), "NaN"),
        (np.array([[0.0, np.inf], [0.5, 1.0]]), "NaN or infinite"),
        (np.zeros(5, np.uint8), r"\(H, W\)"),
        (np.zeros((1, 1), np.uint8), "too small"),
        (np.zeros((4, 4, 5), np.uint8), "channels"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
    ],
    ids=["colour", "empty", "nan", "inf", "1d", "1x1", "5-channels", "strings"],
)
def test_to_grey_errors(array: np.ndarray, match: str) -> None:
    with pytest.raises(ImageReadError, match=match) as info:
        to_grey(array, source="my-array")
    assert "my-array" in str(info.value)


# --------------------------------------------------------------------------- resize_image


@pytest.mark.parametrize(("shape", "size"), [((64, 64), 16), ((10, 10), 32), ((40, 25), 20)])
def test_resize_shape_and_range(shape: tuple[int, int], size: int) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.random(shape, dtype=np.float32)
    out = resize_image(pixels, size)
    assert_valid_pixels(out, (size, size))


@pytest.mark.parametrize(("shape", "size"), [((64, 64), 16), ((10, 10), 32), ((40, 25), 20)])
def test_resize_constant_stays_constant(shape: tuple[int, int], size: int) -> None:
    out = resize_image(np.full(shape, 0.3, np.float32), size)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_resize_shrinking_averages_areas() -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    out = resize_image(checker, 16)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)  # no aliasing: each 4x4 block averages
    pixels = np.arange(16, dtype=np.float32).reshape(4, 4) / 15.0
    expected = pixels.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(resize_image(pixels, 2), expected, atol=1e-6)


def test_resize_same_size_is_a_copy() -> None:
    pixels = np.random.default_rng(2).random((8, 8)).astype(np.float32)
    out = resize_image(pixels, 8)
    np.testing.assert_array_equal(out, pixels)
    assert out is not pixels


def test_resize_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        resize_image(np.zeros((4, 4), np.float32), 0)
    with pytest.raises(ValueError):
        resize_image(np.zeros((4, 4, 3), np.float32), 2)
