"""A real Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) for the PACS tests: its JSON configuration
written to a temp folder (127.0.0.1 ports, storage in the folder, medtune's listener as a modality,
the DICOMweb plugin on), started as a subprocess and waited for over REST."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.services import free_port, stop_process, unavailable, wait_for

PLUGIN_FOLDERS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
AE_TITLE = "ORTHANC"


@dataclass
class Orthanc:
    http: str  # REST base URL
    dicom_port: int
    ae_title: str
    log: Path

    @property
    def dicomweb(self) -> str:
        return f"{self.http}/dicom-web"

    def rest(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        r = httpx.request(method, f"{self.http}{path}", timeout=60, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def upload(self, data: bytes) -> dict[str, Any]:
        out: dict[str, Any] = self.rest("POST", "/instances", content=data)
        return out

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def dicomweb_plugin() -> str:
    for folder in PLUGIN_FOLDERS:
        if any(Path(folder).glob("libOrthancDicomWeb.so*")):
            return folder
    unavailable("Orthanc's DICOMweb plugin (Debian orthanc-dicomweb)", "not installed")
    raise AssertionError  # unreachable: unavailable() fails or skips


def configuration(
    folder: Path, http_port: int, dicom_port: int, modalities: dict[str, list[Any]]
) -> dict[str, Any]:
    return {
        "Name": "medtune-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AE_TITLE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": modalities,
        "Plugins": [dicomweb_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "StableAge": 1,
        "SaveJobs": False,
        "DicomScuTimeout": 30,
    }


@contextmanager
def running_orthanc(folder: Path, modalities: dict[str, list[Any]]) -> Iterator[Orthanc]:
    """Orthanc with `modalities` ({name: [AE, host, port]}) known to it, until the block ends."""
    binary = shutil.which("Orthanc") or shutil.which("orthanc")
    if binary is None:
        unavailable("Orthanc (Debian orthanc)", "not on PATH")
    assert binary is not None
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = configuration(folder, http_port, dicom_port, modalities)
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = folder / "orthanc.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    orthanc = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, AE_TITLE, log)
    try:
        wait_for(lambda: orthanc.rest("GET", "/system"), 60, 0.2, f"Orthanc ({orthanc.output()})")
        yield orthanc
    finally:
        stop_process(proc)
