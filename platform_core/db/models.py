"""Imports every domain's tables so Alembic and tests see one complete metadata."""

from platform_core.auth.models import ApiKey, AuditEvent, Project
from platform_core.datasets.models import Dataset, Image, Study, StudyLabel
from platform_core.db.attempts import TaskAttempt
from platform_core.db.base import Base
from platform_core.erasure.models import Erasure
from platform_core.experiments.models import Experiment, ExperimentRun
from platform_core.jobs.models import BaseModelWeights, Job, JobCheckpoint, JobEvent, JobGroup
from platform_core.pacs.models import DicomAssociation, PacsImport, PacsImportStudy, PacsNode
from platform_core.registry.models import BatchPrediction, ModelAlias, ModelVersion, RegisteredModel
from platform_core.splits.models import DatasetVersion, DatasetVersionImage, Split, SplitAssignment

__all__ = ["ApiKey", "AuditEvent", "Base", "Dataset", "Image", "Project", "Study", "StudyLabel"]
__all__ += ["DatasetVersion", "DatasetVersionImage", "Split", "SplitAssignment"]
__all__ += ["BaseModelWeights", "Job", "JobCheckpoint", "JobEvent", "JobGroup"]
__all__ += ["BatchPrediction", "ModelAlias", "ModelVersion", "RegisteredModel"]
__all__ += ["Erasure"]
__all__ += ["Experiment", "ExperimentRun"]
__all__ += ["TaskAttempt"]
__all__ += ["DicomAssociation", "PacsImport", "PacsImportStudy", "PacsNode"]
