"""Client commands of the CLI against a live server, run as a user would (a `medtune` process): login
stores a 0600 config, read commands print one JSON document with --json, exit codes are dependable."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import medtune
from tests.live import Live, live_platform, sample_files
from tests.services import ROOT, free_port

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_platform(tmp_path_factory.mktemp("live-cli"), queues="ingest") as platform:
        yield platform


class Cli:
    def __init__(self, config_dir: Path, env: dict[str, str] | None = None) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
        self.env |= {"MEDTUNE_CONFIG_DIR": str(config_dir), "COLUMNS": "200", **(env or {})}

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "medtune.cli.main", *args], cwd=ROOT, env=self.env,
                              input=stdin, capture_output=True, text=True, timeout=180)  # fmt: skip

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def labelled(live: Live, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ready, labelled dataset of 12 patients (made with the SDK: the CLI's own upload is tested below)."""
    paths, labels_csv = sample_files(tmp_path_factory.mktemp("cli-split") / "dicoms", patients=12)
    with medtune.Client(live.url, live.key) as c:
        ds = c.datasets.create("cli-split", "binary", ["finding"], min_image_size=64)
        c.datasets.upload(ds, paths, progress=False)
        c.datasets.upload_labels(ds, labels_csv)
        assert c.datasets.wait(ds, timeout=120, poll_interval=0.5).counts.accepted == 12, live.worker_log()
    return ds.id


@pytest.fixture
def cli(live: Live, tmp_path: Path) -> Cli:
    run = Cli(tmp_path / "config")
    done = run("login", "--url", live.url, "--api-key", live.key)
    assert done.returncode == 0, done.stderr
    return run


def test_login_stores_url_and_key_readable_by_the_owner_only(live: Live, tmp_path: Path) -> None:
    run = Cli(tmp_path / "cfg")
    bad = run("login", "--url", live.url, stdin="mt_wrong\n")  # the key is asked for, hidden
    assert bad.returncode == 1 and "authentication_error" in bad.stderr
    assert not (tmp_path / "cfg" / "config.json").exists()

    done = run("login", "--url", live.url, stdin=live.key + "\n")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "cfg" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": live.url, "api_key": live.key}
    assert run.json("whoami")["id"] == live.project_id

    # The stored key never goes to another server: the env URL wins and carries no key.
    elsewhere = Cli(tmp_path / "cfg", {"MEDTUNE_URL": f"http://127.0.0.1:{free_port()}"})("whoami")
    assert elsewhere.returncode == 3 and "cannot reach" in elsewhere.stderr

    assert run("logout").returncode == 0 and not path.exists()


def test_dataset_upload_labels_and_report(cli: Cli, tmp_path: Path) -> None:
    created = cli("datasets", "create", "cli-chest", "--labels", "finding", "--min-image-size", "64")
    assert created.returncode == 0, created.stderr
    ds_id = created.stdout.strip()
    assert ds_id.startswith("ds_")

    paths, labels_csv = sample_files(tmp_path / "dicoms", patients=4)
    (tmp_path / "dicoms" / "readme.txt").write_text("not dicom")
    upload = cli.json("datasets", "upload", ds_id, str(tmp_path / "dicoms"), "--parallel", "2", "--wait")
    outcomes = [f["outcome"] for f in upload["upload"]["data"]]
    assert sorted(outcomes) == ["queued"] * 4 + ["rejected"]
    assert upload["dataset"]["status"] == "ready" and upload["dataset"]["counts"]["accepted"] == 4

    labels = cli.json("labels", "upload", ds_id, str(labels_csv))
    assert labels["matched"] == 4 and labels["errors"] == []

    shown = cli.json("datasets", "show", ds_id)
    assert shown["counts"]["labelled_studies"] == 4 and shown["counts"]["rejected"] == {"not_dicom": 1}
    table = cli("datasets", "show", ds_id)
    assert table.returncode == 0 and "not_dicom" in table.stdout and "finding" in table.stdout

    images = cli.json("datasets", "images", ds_id, "--status", "accepted", "--limit", "3")
    assert len(images) == 3 and all(i["status"] == "accepted" for i in images)
    listed = cli.json("datasets", "list")
    assert ds_id in [d["id"] for d in listed]


def test_exit_codes(cli: Cli, tmp_path: Path) -> None:
    missing = cli("datasets", "show", "ds_nope")
    assert missing.returncode == 1 and "not_found_error" in missing.stderr and missing.stdout == ""
    bad = cli("datasets", "create", "x", "--labels", "a,a")
    assert bad.returncode == 1 and "invalid_request_error" in bad.stderr
    assert cli("datasets", "show").returncode == 2  # usage
    no_file = cli("datasets", "upload", "ds_x", str(tmp_path / "absent"))
    assert no_file.returncode == 1 and "no such file" in no_file.stderr


def test_splits_create_and_show(cli: Cli, labelled: str) -> None:
    made = cli.json(
        "splits", "create", labelled, "--seed", "5", "--train", "0.5", "--val", "0.25", "--test", "0.25"
    )
    assert made["seed"] == 5 and made["dataset_id"] == labelled and len(made["sha256"]) == 64
    assert {k: v["patients"] for k, v in made["counts"].items()} == {"train": 6, "val": 3, "test": 3}

    shown = cli.json("splits", "show", labelled, made["id"])
    assert shown["id"] == made["id"] and shown["sha256"] == made["sha256"]
    again = cli.json(
        "splits", "create", labelled, "--seed", "5", "--train", "0.5", "--val", "0.25", "--test", "0.25"
    )
    assert again["id"] != made["id"] and again["sha256"] == made["sha256"]  # same seed, same data: same split

    table = cli("splits", "show", labelled, made["id"])
    assert table.returncode == 0 and made["id"] in table.stdout and "patients" in table.stdout
    manifest = cli("splits", "show", labelled, made["id"], "--manifest")
    assert manifest.returncode == 0 and len(manifest.stdout.strip().splitlines()) == 13  # header + 12 images
    drawn = cli("splits", "create", labelled)  # no seed: one is drawn and shown
    assert drawn.returncode == 0 and "seed" in drawn.stdout

    # Exit codes: 1 refused (stdout empty), 2 bad usage.
    missing = cli("splits", "show", labelled, "spl_nope", "--json")
    assert missing.returncode == 1 and "not_found_error" in missing.stderr and missing.stdout == ""
    bad = cli("splits", "create", labelled, "--train", "0.9", "--val", "0.3", "--test", "0.3", "--json")
    assert bad.returncode == 1 and "invalid_request_error" in bad.stderr and bad.stdout == ""
    unknown = cli("splits", "create", "ds_nope", "--json")
    assert unknown.returncode == 1 and "not_found_error" in unknown.stderr
    assert cli("splits", "create", labelled, "--seed", "many").returncode == 2
    assert cli("splits", "show", labelled).returncode == 2
