"""Uploads stream: the API process's peak memory does not grow with the number of files in a request.

A live server (uvicorn in its own process, embedded mode: SQLite, local objects, filesystem broker)
receives one request of N small DICOM files, then one of 4N, one zip of 4N, and a chunked STOW-RS
request of 4N; its peak resident memory (VmHWM) after the first is the yardstick. Parsing the whole
form first (Starlette keeps every part under 1 MB in memory) would add about 3N files' worth;
streaming adds nothing that scales.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_dicom import radiograph, to_bytes
from tests.services import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
N = 60
SIZE = 256  # 16-bit pixels: about 130 kB per file, so 3N files would be about 23 MiB
BOUND_MB = 8.0


def peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int, dict[str, str]]]:
    from platform_core.auth import service
    from platform_core.config import Settings
    from platform_core.db.migrate import upgrade
    from platform_core.db.session import make_engine, make_sessionmaker

    secret = "mem-" + secrets.token_hex(16)
    settings = Settings(data_dir=tmp_path, deid_secret=secret)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as s:
        _key, raw = service.create_key(s, service.create_project(s, "memory"))
        s.commit()
    engine.dispose()
    port = free_port()
    env = {**os.environ, "MEDTUNE_DATA_DIR": str(tmp_path), "MEDTUNE_DEID_SECRET": secret}
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code < 500
            except httpx.HTTPError:
                return proc.poll() is not None  # exited: the assert below says so

        wait_for(up, 60, what="uvicorn")
        assert proc.poll() is None, (tmp_path / "api.log").read_text()
        yield base, proc.pid, {"Authorization": f"Bearer {raw}"}
    finally:
        stop_process(proc)
        log.close()


def dicoms(first: int, n: int) -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(first)
    base = rng.integers(0, 4000, (SIZE, SIZE))
    for i in range(first, first + n):
        pixels = (base + i) % 4096  # distinct files, cheap to make
        yield f"f{i}.dcm", to_bytes(radiograph(patient=i % 40 + 1, study=i + 1, size=SIZE, pixels=pixels))


def upload(client: Any, ds_id: str, files: list[tuple[str, bytes]]) -> list[str]:
    parts = [("files", (name, data, "application/dicom")) for name, data in files]
    r = client.post(f"/v1/datasets/{ds_id}/files", files=parts)
    assert r.status_code == 202, r.text
    return [d["outcome"] for d in r.json()["data"]]


def test_peak_memory_does_not_grow_with_the_number_of_files(
    server: tuple[str, int, dict[str, str]], tmp_path: Path
) -> None:
    import httpx

    base, pid, auth = server
    with httpx.Client(base_url=base, headers=auth, timeout=300) as client:
        body = {"name": "mem", "task": "binary", "labels": ["x"]}
        ds_id = client.post("/v1/datasets", json=body).raise_for_status().json()["id"]
        assert upload(client, ds_id, list(dicoms(0, N))) == ["queued"] * N
        after_n = peak_mb(pid)

        assert upload(client, ds_id, list(dicoms(N, 4 * N))) == ["queued"] * (4 * N)
        after_4n = peak_mb(pid)

        archive = tmp_path / "big.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for name, data in dicoms(5 * N, 4 * N):
                zf.writestr(name, data)
        with archive.open("rb") as fh:
            r = client.post(
                f"/v1/datasets/{ds_id}/files", files=[("files", ("big.zip", fh, "application/zip"))]
            )
        assert r.status_code == 202 and [d["outcome"] for d in r.json()["data"]] == ["queued"] * (4 * N)
        after_zip = peak_mb(pid)

        def stow_body() -> Iterator[bytes]:  # chunked, one instance at a time
            for _name, data in dicoms(9 * N, 4 * N):
                yield b"--b3\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
            yield b"--b3--\r\n"

        related = 'multipart/related; type="application/dicom"; boundary=b3'
        r = client.post(f"/v1/datasets/{ds_id}/dicomweb/studies", content=stow_body(),
                        headers={"content-type": related})  # fmt: skip
        assert r.status_code == 200 and len(r.json()["00081199"]["Value"]) == 4 * N
        after_stow = peak_mb(pid)

    upload_mb = 4 * N * len(next(dicoms(0, 1))[1]) / 2**20
    growth = {
        "4N files": after_4n - after_n,
        "zip of 4N": after_zip - after_n,
        "STOW-RS of 4N": after_stow - after_n,
    }
    # Measured: about 2 MiB with streaming; about 30 MiB (the whole 4N upload) when the form is parsed first.
    assert all(g < BOUND_MB for g in growth.values()), (after_n, growth, upload_mb)
