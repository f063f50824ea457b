"""Pixels once: Modality LUT, VOI LUT/window, MONOCHROME1, artifacts, resize and the .npy cache."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from platform_core.dicom import cache, pixels
from platform_core.dicom.read import Rejected
from tests.fixtures_dicom import radiograph, to_bytes


def read(ds: Dataset) -> Dataset:
    return dcmread(io.BytesIO(to_bytes(ds)))


def ramp(size: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return ((x + y) * (4000 / (2 * size))).astype(np.uint16)


def test_modality_lut_on_a_real_ct() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = dcmread(path)
    assert float(ds.RescaleIntercept) != 0 or float(ds.RescaleSlope) != 1
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0)
    got = pixels.decode(ds)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-3)


def test_voi_lut_sequence_on_a_real_file() -> None:
    path = get_testdata_file("vlut_04.dcm")  # VOI LUT Sequence, no window
    assert path is not None
    ds = dcmread(path)
    assert "VOILUTSequence" in ds
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0)
    np.testing.assert_allclose(pixels.decode(ds), reference, rtol=1e-5, atol=1e-3)


def test_window_clips_outside_values() -> None:
    ds = read(radiograph(pixels=ramp()))
    ds.WindowCenter, ds.WindowWidth = 1000, 400  # 800..1200
    out = pixels.decode(ds)
    arr = ds.pixel_array
    assert np.ptp(out[arr <= 790]) == 0 and np.ptp(out[arr >= 1210]) == 0
    inside = (arr > 850) & (arr < 1150)
    assert np.all(np.diff(np.sort(out[inside])) >= 0) and np.ptp(out[inside]) > 0
    cached = pixels.to_cache(out, 64)
    assert cached.min() == 0 and cached.max() == 65535


def test_monochrome1_is_inverted() -> None:
    m2 = pixels.to_cache(pixels.decode(read(radiograph(pixels=ramp()))), 64)
    m1 = pixels.to_cache(pixels.decode(read(radiograph(pixels=ramp(), photometric="MONOCHROME1"))), 64)
    assert m2[0, 0] < m2[-1, -1] and m1[0, 0] > m1[-1, -1]
    np.testing.assert_array_less(np.abs(m1.astype(int) + m2.astype(int) - 65535), 2)


def stuck_pixel() -> np.ndarray:
    img = np.zeros((160, 160), dtype=np.float32)
    img[3, 3] = 4095.0  # a blank exposure with one hot pixel: its spread is nearly nothing
    return img


@pytest.mark.parametrize(
    "image", [np.full((64, 64), 700.0), stuck_pixel()], ids=["constant", "near-constant"]
)
def test_artifacts_are_rejected(image: np.ndarray) -> None:
    with pytest.raises(Rejected) as err:
        pixels.to_cache(image, 64)
    assert err.value.reason == "artifact"


def test_undecodable_pixels_are_rejected() -> None:
    from tests.fixtures_dicom import undecodable

    with pytest.raises(Rejected) as err:
        pixels.decode(dcmread(io.BytesIO(undecodable())))
    assert err.value.reason == "undecodable"


RESIZES = [((160, 120), 64, (64, 48)), ((40, 80), 160, (80, 160)), ((64, 64), 64, (64, 64))]


@pytest.mark.parametrize(("shape", "size", "expected"), RESIZES)
def test_resize_to_cache_size(shape: tuple[int, int], size: int, expected: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(1000, 200, shape).astype(np.float32)
    out = pixels.to_cache(img, size)
    assert out.dtype == np.uint16 and out.shape == expected
    # Area averaging keeps the mean brightness.
    full = pixels.to_cache(img, max(shape))
    assert abs(float(out.mean()) - float(full.mean())) < 0.01 * 65535


def test_compressed_real_file_reaches_the_cache() -> None:
    path = get_testdata_file("JPEG2000.dcm")
    assert path is not None
    out = pixels.to_cache(pixels.decode(dcmread(path)), 96)
    assert max(out.shape) == 96 and out.std() > 0


def test_cache_round_trip() -> None:
    arr = pixels.to_cache(pixels.decode(read(radiograph(pixels=ramp(160)))), 64)
    data = cache.encode(arr)
    assert data.startswith(b"\x93NUMPY") and cache.CONTENT_TYPE == "application/x-npy"
    back = cache.decode(data)
    assert back.dtype == np.uint16 and np.array_equal(back, arr)
    assert cache.content_hash(back) == cache.content_hash(arr)
    assert cache.content_hash(arr.T.copy()) != cache.content_hash(arr)
    with pytest.raises(ValueError, match="uint16"):
        cache.encode(arr.astype(np.float32))
    with pytest.raises(ValueError, match="not a pixel cache"):
        cache.decode(b"\x00" * 200)


def test_cache_refuses_pickles_and_reads_legacy_png() -> None:
    from PIL import Image

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        cache.decode(buf.getvalue())
    arr = (np.arange(64 * 64, dtype=np.uint16) * 7).reshape(64, 64)
    png = io.BytesIO()
    Image.fromarray(arr).save(png, format="PNG")
    assert np.array_equal(cache.decode(png.getvalue()), arr)


def test_cache_objects_decode_without_np_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """np.load compiles its header (ast), which CPython 3.11.7 can break under concurrent threads."""
    import numpy as np

    from platform_core.dicom import cache

    arr = (np.arange(35, dtype=np.uint16) * 1000).reshape(5, 7)
    blob = cache.encode(arr)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("np.load called")

    monkeypatch.setattr(np, "load", refuse)
    out = cache.decode(blob)
    assert out.dtype == np.uint16 and out.flags.writeable and (out == arr).all()
