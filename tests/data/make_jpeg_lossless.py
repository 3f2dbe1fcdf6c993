"""Make the JPEG Lossless (process 14) test DICOMs in this folder from pydicom's MR_small.dcm.

pydicom ships no grey JPEG Lossless file, and neither pydicom nor pylibjpeg can encode one, so
these two were made once with imagecodecs (libjpeg-turbo 3, lossless mode) and are committed:

    pip install imagecodecs && python tests/data/make_jpeg_lossless.py

- ``MR_small_jpeg_lossless_sv1.dcm``: JPEG Lossless, first-order prediction (1.2.840.10008.1.2.4.70)
- ``MR_small_jpeg_lossless_p6.dcm``: JPEG Lossless process 14, predictor 6 (1.2.840.10008.1.2.4.57)
"""

from __future__ import annotations

from pathlib import Path

import imagecodecs
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLossless, JPEGLosslessSV1

HERE = Path(__file__).resolve().parent


def main() -> None:
    source = get_testdata_file("MR_small.dcm")
    assert source is not None
    for name, syntax, predictor in (
        ("MR_small_jpeg_lossless_sv1.dcm", JPEGLosslessSV1, 1),
        ("MR_small_jpeg_lossless_p6.dcm", JPEGLossless, 6),
    ):
        ds = dcmread(source)
        # MR_small is signed 16-bit with values 127..2145: the same bits as unsigned samples.
        pixels = ds.pixel_array.astype("uint16")
        code = imagecodecs.jpeg8_encode(
            pixels, lossless=True, predictor=predictor, bitspersample=ds.BitsStored
        )
        ds.PixelData = encapsulate([code])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(HERE / name, enforce_file_format=True)
        print(f"wrote {name} ({len(code)} bytes of JPEG)")


if __name__ == "__main__":
    main()
