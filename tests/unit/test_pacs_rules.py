"""Who may associate with the DICOM listener, and the sealing of PACS secrets at rest."""

from __future__ import annotations

import pytest

from platform_core.pacs import crypto
from platform_core.pacs.listener import allowed

SECRET = "a-deid-secret-of-at-least-32-bytes-long"


@pytest.mark.parametrize(
    ("rules", "ae", "host", "expected"),
    [
        ([], "ORTHANC", "10.0.0.5", False),  # nobody unless listed
        (["ORTHANC"], "ORTHANC", "10.0.0.5", True),
        (["ORTHANC@10.0.0.5"], "ORTHANC", "10.0.0.5", True),
        (["ORTHANC@10.0.0.5"], "ORTHANC", "10.0.0.6", False),
        (["ORTHANC@10.0.0.5"], "OTHER", "10.0.0.5", False),
        (["*@10.0.0.5"], "ANYONE", "10.0.0.5", True),
        (["*"], "ANYONE", "192.168.1.1", True),
    ],
)
def test_callers_are_matched_by_ae_title_and_host(
    rules: list[str], ae: str, host: str, expected: bool
) -> None:
    assert allowed(rules, ae, host) is expected


def test_sealed_values_open_only_under_the_same_secret() -> None:
    token = crypto.seal(SECRET, {"password": "pw"})
    assert b"pw" not in token
    assert crypto.open_sealed(SECRET, token) == {"password": "pw"}
    with pytest.raises(RuntimeError, match="does not decrypt"):
        crypto.open_sealed(SECRET + "-changed", token)


def test_rest_sr_answers_dicom_only() -> None:
    from platform_core.errors import Invalid
    from platform_core.pacs import sr

    sr.check_request("application/dicom")
    with pytest.raises(Invalid, match="format=sr"):
        sr.check_request("image/png")
