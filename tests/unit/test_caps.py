"""Caps before work: deflated DICOM inflates under a cap, declared pixels are checked before any decode
(the API's parse, the worker's decode, PNG/JPEG headers), zip members are counted, job bounds hold."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from pydicom.filereader import read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from platform_core.datasets import archives
from platform_core.datasets.ingest import PixelJob, build_caches
from platform_core.dicom import pixels
from platform_core.dicom.read import Caps, Rejected, load, parse
from platform_core.jobs.schemas import JobCreate
from platform_core.storage.local import LocalStore
from tests.fixtures_dicom import radiograph, to_bytes
from tests.hostile_inputs import compressed_frame_bomb, deflate_bomb, empty_members_zip, png_header, rle_bomb

ROOT = Path(__file__).resolve().parents[2]
SMALL = Caps(max_inflated_bytes=64 * 1024 * 1024, max_pixels=64_000_000)


def test_a_deflated_file_reads_as_the_same_image_stored_inflated() -> None:
    plain = radiograph(patient=3, size=96)
    deflated = radiograph(patient=3, size=96)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = to_bytes(deflated)
    assert len(data) < len(to_bytes(plain))
    ds = parse(data, SMALL).dataset
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PatientID == plain.PatientID
    np.testing.assert_array_equal(pixels.decode(ds), pixels.decode(parse(to_bytes(plain)).dataset))


def test_a_deflate_bomb_is_refused_at_the_cap_naming_it() -> None:
    with pytest.raises(Rejected) as caught:
        parse(deflate_bomb(256 * 1024 * 1024), SMALL)
    assert caught.value.reason == "too_large"
    assert "MEDTUNE_MAX_INFLATED_BYTES" in str(caught.value.detail)
    assert f"{SMALL.max_inflated_bytes:,}" in str(caught.value.detail)


HEADER_OF_A_BOMB = """
import io
from platform_core.dicom.read import header
from tests.fixtures_dicom import radiograph
from tests.hostile_inputs import deflate_bomb
ds = header(io.BytesIO(deflate_bomb(3 * 1024**3)), ["SOPClassUID", "SOPInstanceUID"])
assert ds.SOPInstanceUID == radiograph(patient=900).SOPInstanceUID
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent's memory across exec.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def test_the_header_of_a_deflate_bomb_reads_without_inflating_it() -> None:
    # In a process of its own: this one's peak holds whatever earlier tests loaded.
    out = subprocess.run([sys.executable, "-c", HEADER_OF_A_BOMB], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 1024 * 1024  # KiB: under 1 GiB for a 3 GiB bomb


def test_a_broken_deflate_stream_is_corrupt() -> None:
    data = bytearray(deflate_bomb(32 * 1024 * 1024))
    fp = io.BytesIO(data)
    fp.seek(132)
    read_dataset(fp, False, True, stop_when=lambda tag, _vr, _n: tag >> 16 != 2)  # the file meta
    data[fp.tell()] = 0b111  # the body's first deflate block: final, of the reserved type 3
    with pytest.raises(Rejected) as caught:
        parse(bytes(data), SMALL)
    assert caught.value.reason == "corrupt"


def test_declared_pixels_are_checked_before_any_decode() -> None:
    bomb = rle_bomb()
    with pytest.raises(Rejected) as caught:
        parse(bomb)
    assert caught.value.reason == "too_large"
    assert "400,000,000" in str(caught.value.detail) and "MEDTUNE_MAX_PIXELS" in str(caught.value.detail)
    # The worker reads stored files without the API's checks: its decode checks the header too.
    with pytest.raises(Rejected) as caught:
        pixels.decode(load(bomb))
    assert caught.value.reason == "too_large"
    # Frames and samples count: 64 x 64 x 3 frames is over a 10,000-pixel cap.
    ds = radiograph(size=64)
    ds.NumberOfFrames = 3
    with pytest.raises(Rejected):
        pixels.decode(ds, max_pixels=10_000)


@pytest.mark.parametrize("kind", ["jpeg", "j2k"])
def test_a_compressed_frame_is_checked_by_its_own_header(kind: str) -> None:
    bomb = compressed_frame_bomb(30000, kind)
    for step in (lambda: parse(bomb), lambda: pixels.decode(load(bomb))):
        with pytest.raises(Rejected) as caught:
            step()
        assert caught.value.reason == "too_large"
        assert "compressed frame declares 900,000,000 pixels" in str(caught.value.detail)
    honest = parse(compressed_frame_bomb(256, kind)).dataset  # its frame says what its header says
    assert pixels.decode(honest).shape == (256, 256)


def test_the_worker_rejects_a_stored_pixel_bomb_as_too_large(tmp_path: Path) -> None:
    store = LocalStore(f"file://{tmp_path}")
    store.put_bytes("datasets/ds_x/dicom/bomb.dcm", rle_bomb(), "application/dicom")
    job = PixelJob("img_x", "ds_x", "dicom", "queued", "datasets/ds_x/dicom/bomb.dcm", 64)
    [result] = build_caches(store, [job], secret="s" * 32, caps=Caps())
    assert (result.status, result.reason) == ("rejected", "too_large")


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (9_000, 9_000)])
def test_png_size_comes_from_the_header_before_decoding(width: int, height: int) -> None:
    with pytest.raises(Rejected) as caught:
        pixels.decode_image(png_header(width, height))
    assert caught.value.reason == "too_large"
    assert "MEDTUNE_MAX_PIXELS" in str(caught.value.detail)


def test_a_zip_over_the_member_cap_is_refused_before_any_member_is_read(tmp_path: Path) -> None:
    path = empty_members_zip(tmp_path / "many.zip", 1_001)
    limits = archives.Limits(max_total_bytes=1 << 30, max_ratio=200.0, max_member_bytes=1 << 20,
                             max_members=1_000)  # fmt: skip
    with path.open("rb") as fh, pytest.raises(Rejected) as caught:
        next(archives.members(fh, limits))
    assert caught.value.reason == "too_many_members"
    assert "1,001" in str(caught.value.detail) and "MEDTUNE_MAX_ZIP_MEMBERS" in str(caught.value.detail)
    with path.open("rb") as fh:
        assert sum(1 for _ in archives.members(fh, archives.Limits(1 << 30, 200.0, 1 << 20, 1_001))) == 1_001


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"hyperparameters": {"epochs": 1_000_000}}, ("hyperparameters", "epochs")),
        ({"hyperparameters": {"batch_size": 0}}, ("hyperparameters", "batch_size")),
        ({"hyperparameters": {"learning_rate": 50.0}}, ("hyperparameters", "learning_rate")),
        ({"hyperparameters": {"image_size": 100_000}}, ("hyperparameters", "image_size")),
        ({"hyperparameters": {"early_stopping_patience": 0}}, ("hyperparameters", "early_stopping_patience")),
        ({"method": {"type": "lora", "lora": {"r": 100_000}}}, ("method", "lora", "r")),
        ({"method": {"type": "lora", "lora": {"dropout": 1.0}}}, ("method", "lora", "dropout")),
        ({"seed": -1}, ("seed",)),
    ],
)
def test_job_bounds_name_the_field(body: dict[str, object], param: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        JobCreate.model_validate({"dataset_id": "ds_x", "base_model": "test_vit", **body})
    [error] = caught.value.errors()
    assert error["loc"] == param
    assert "Input should be" in error["msg"]


def test_auto_and_values_within_bounds_still_pass() -> None:
    job = JobCreate.model_validate({
        "dataset_id": "ds_x", "base_model": "test_vit", "method": {"lora": {"r": 16, "alpha": "auto"}},
        "hyperparameters": {"epochs": 1000, "early_stopping_patience": None, "learning_rate": "auto"},
    })  # fmt: skip
    assert job.hyperparameters.epochs == 1000 and job.method.lora.r == 16
