"""Erase an image, a dataset or a patient's images: objects, pixel caches, rows, MLflow artifacts.

Each erasure removes the rows (images; studies left without images and their label rows; frozen
version rows and split assignments of those images), then the MLflow artifacts and CSV objects
that name the images, then the objects themselves. Dataset versions and splits that held them are
marked (`erased_members`), jobs and model versions trained on them flagged (`data_erased`). The
database work is flushed, never committed: the request commits, and a failure before the commit
leaves the rows in place so the same request can be sent again. A repeated request removes nothing
and still answers with a record. A patient is matched by the HMAC pseudonym ingest gives it; the
original id is never stored or logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from platform_core.datasets.models import Dataset, Image
from platform_core.dicom import cache
from platform_core.dicom.deid import pseudonym
from platform_core.erasure import artifacts
from platform_core.erasure import repository as repo
from platform_core.erasure.models import Erasure
from platform_core.erasure.schemas import ErasureOut, Removed
from platform_core.errors import NotFound, PlatformError
from platform_core.ids import new_id
from platform_core.storage import ObjectStore


class TrackingUnavailable(PlatformError):
    status_code = 503
    type = "service_unavailable_error"


@dataclass
class Eraser:
    """Where erased images live: the request's session, the object store and MLflow."""

    session: Session
    store: ObjectStore
    tracking_uri: str | None
    project_id: str

    def erase_image(self, dataset_id: str, image_id: str) -> ErasureOut:
        dataset = self._dataset(dataset_id)
        image = repo.image_in(self.session, dataset.id, image_id)
        if image is None:
            seen = dataset.deleted_at is not None or repo.erased_before(
                self.session, self.project_id, "image", image_id
            )
            if not seen:
                raise NotFound(f"no image '{image_id}' in this dataset", param="image_id")
            return self._record("image", image_id, dataset.id, Removed())
        return self._record("image", image_id, dataset.id, self._erase([image], []))

    def erase_dataset(self, dataset_id: str) -> ErasureOut:
        dataset = self._dataset(dataset_id)
        if dataset.deleted_at is not None:
            return self._record("dataset", dataset.id, dataset.id, Removed())
        removed = self._erase(
            repo.dataset_images(self.session, dataset.id), repo.dataset_studies(self.session, dataset.id)
        )
        removed.labels += repo.delete_dataset_labels(self.session, dataset.id)
        removed.objects += artifacts.delete_prefix(self.store, f"datasets/{dataset.id}/")
        dataset.deleted_at = datetime.now(UTC)
        self.session.flush()
        return self._record("dataset", dataset.id, dataset.id, removed)

    def erase_patient(self, secret: str, patient_id: str) -> ErasureOut:
        """Every image of the patient in this project's datasets (deleted ones hold none)."""
        patient = patient_pseudonym(secret, patient_id)
        datasets = repo.project_dataset_ids(self.session, self.project_id)
        images = repo.patient_images(self.session, datasets, patient)
        removed = self._erase(images, repo.patient_studies(self.session, datasets, patient))
        return self._record("patient", patient, None, removed)

    # -- steps ----------------------------------------------------------------------------------

    def _dataset(self, dataset_id: str) -> Dataset:
        dataset = repo.dataset_any_state(self.session, self.project_id, dataset_id)
        if dataset is None:
            raise NotFound(f"no dataset '{dataset_id}'", param="dataset_id")
        return dataset

    def _erase(self, images: Sequence[Image], studies: Sequence[str]) -> Removed:
        s = self.session
        ids = sorted(i.id for i in images)
        # The cache's own key too: a pixel task may have written it and not yet recorded it.
        keys = [k for i in images for k in (i.dicom_key, i.cache_key, cache_key(i))]
        versions = repo.mark_versions(s, ids)
        splits = repo.mark_splits(s, ids)
        jobs = repo.mark_jobs(s, sorted(splits), sorted(versions))
        removed = Removed(
            images=repo.delete_images(s, ids),
            dataset_versions_marked=len(versions),
            splits_marked=len(splits),
            jobs_marked=len(jobs),
            model_versions_marked=repo.mark_model_versions(s, [j.id for j in jobs]),
        )
        s.flush()
        orphans = repo.orphaned_studies(s, sorted({*studies, *(i.study_id for i in images if i.study_id)}))
        group_keys = repo.study_keys(s, orphans)
        removed.studies, removed.labels = repo.delete_studies(s, orphans)
        s.flush()
        erased = frozenset(ids)
        runs = [j.mlflow_run_id for j in jobs if j.mlflow_run_id]
        removed.mlflow_artifacts = self._scrub_mlflow(runs, erased)
        removed.objects = artifacts.rewrite_objects(self.store, repo.batch_outputs(s, sorted(splits)), erased)
        predictions = repo.prediction_documents(s, jobs)
        removed.objects += artifacts.rewrite_predictions(self.store, predictions, erased)
        removed.objects += artifacts.delete_objects(self.store, keys)
        removed.objects += artifacts.drop_label_groups(self.store, group_keys)
        return removed

    def _scrub_mlflow(self, run_ids: list[str], erased: frozenset[str]) -> int:
        try:
            return artifacts.scrub_mlflow_runs(self.tracking_uri, run_ids, erased)
        except Exception as exc:  # the rows stay (no commit): the same request can be sent again
            raise TrackingUnavailable(
                f"MLflow could not be scrubbed ({type(exc).__name__}); nothing was committed: send the "
                "erasure again once MLflow is reachable"
            ) from exc

    def _record(self, kind: str, target: str, dataset_id: str | None, removed: Removed) -> ErasureOut:
        record = Erasure(
            id=new_id("ers"), project_id=self.project_id, kind=kind, target=target, dataset_id=dataset_id,
            removed=removed.model_dump(),
        )  # fmt: skip
        self.session.add(record)
        self.session.flush()
        return ErasureOut.model_validate(
            {
                "id": record.id,
                "kind": kind,
                "target": target,
                "dataset_id": dataset_id,
                "removed": removed,
                "created_at": record.created_at,
            }  # fmt: skip
        )


def cache_key(image: Image) -> str:
    return f"datasets/{image.dataset_id}/cache/{image.id}{cache.SUFFIX}"


def patient_pseudonym(secret: str, patient_id: str) -> str:
    """The pseudonym ingest gives a patient with this PatientID (see Deidentifier.patient_key)."""
    return pseudonym(secret, "patient", "id:" + patient_id.strip())
