"""Typed responses of the REST API (pydantic). Unknown fields are kept, so a newer server never breaks
an older SDK; fields the SDK relies on are typed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T", bound="Resource")


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


# --- project and keys -----------------------------------------------------------------------


class Project(Resource):
    id: str
    name: str
    key_id: str
    scopes: list[str]


class ApiKey(Resource):
    id: str
    name: str = ""
    prefix: str = ""
    scopes: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    key: str | None = None  # only in the answer that created it


# --- datasets -------------------------------------------------------------------------------


class DatasetOptions(Resource):
    min_image_size: int = 128
    modalities: list[str] = Field(default_factory=lambda: ["CR", "DX"])
    cache_size: int = 512
    dates: str = "shift"  # shift | remove | keep
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_safe_private: bool = False
    burned_in_annotation: str = "reject"


class DeidMethod(Resource):
    option: str
    code: str
    meaning: str = ""


class DeidKept(Resource):
    attribute: str
    option: str
    files: int = 0


class DeidReport(Resource):
    """What de-identification did in a dataset: counts per action, attributes options kept,
    rejections by reason. Never a value."""

    dataset_id: str
    object: str = "deid_report"
    profile: str = ""
    allowlist: str = ""
    methods: list[DeidMethod] = Field(default_factory=list)
    files: int = 0
    actions: dict[str, int] = Field(default_factory=dict)
    kept: list[DeidKept] = Field(default_factory=list)
    rejected: dict[str, int] = Field(default_factory=dict)


class LabelCounts(Resource):
    positives: int = 0
    negatives: int = 0


class DatasetCounts(Resource):
    received: int = 0
    accepted: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    duplicates: int = 0
    pending: int = 0
    studies: int = 0
    patients: int = 0
    labelled_studies: int = 0
    labels: dict[str, LabelCounts] = Field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class Dataset(Resource):
    id: str
    object: str = "dataset"
    name: str
    task: str
    labels: list[str]
    options: DatasetOptions = Field(default_factory=DatasetOptions)
    status: str = "ingesting"
    counts: DatasetCounts = Field(default_factory=DatasetCounts)
    version: str | None = None
    dicom_ae_title: str | None = None  # the called AE title a PACS sends to
    created_at: datetime | None = None


class FileOutcome(Resource):
    index: int
    filename: str
    outcome: str  # queued | duplicate | rejected
    reason: str | None = None
    image_id: str | None = None


class UploadResult(Resource):
    """The outcome of every file of an upload, in the order the files were given."""

    data: list[FileOutcome] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list, description="files whose request failed after retries")

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.data if f.outcome == outcome)

    @property
    def queued(self) -> int:
        return self.count("queued")

    @property
    def duplicates(self) -> int:
        return self.count("duplicate")

    @property
    def rejected(self) -> int:
        return self.count("rejected")


class RowError(Resource):
    row: int
    column: str | None = None
    message: str


class LabelImport(Resource):
    rows: int = 0
    imported: int = 0
    matched: int = 0
    unmatched: int = 0
    errors: list[RowError] = Field(default_factory=list)


class Image(Resource):
    id: str
    status: str
    reason: str | None = None
    source: str | None = None
    study_pseudonym: str | None = None
    patient_pseudonym: str | None = None
    labels: dict[str, int] | None = None
    rows: int | None = None
    columns: int | None = None
    size_bytes: int | None = None
    modality: str | None = None
    created_at: datetime | None = None


# --- splits ---------------------------------------------------------------------------------


class Split(Resource):
    id: str
    dataset_id: str | None = None
    dataset_version: str | None = None
    source: str | None = None  # seeded | column
    seed: int | None = None
    seed_drawn: bool | None = None
    fractions: dict[str, float] | None = None
    column: str | None = None
    sha256: str | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    erased_members: int = 0  # images of the manifest erased since; sha256 stays the original's
    created_at: datetime | None = None


# --- fine-tuning ----------------------------------------------------------------------------


class JobError(Resource):
    code: str | None = None
    message: str = ""
    param: str | None = None


class JobProgress(Resource):
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    eta_seconds: float | None = None


class JobBest(Resource):
    epoch: int | None = None
    metric: str | None = None
    value: float | None = None


TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Job(Resource):
    id: str
    object: str = "fine_tuning.job"
    status: str
    dataset_id: str | None = None
    dataset_version: str | None = None
    base_model: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None  # registered weights: their sha256, recorded when the job ran
    method: dict[str, Any] | None = None
    hyperparameters: dict[str, Any] | None = None
    checkpoint_metric: str | None = None
    split: dict[str, Any] | None = None
    progress: JobProgress | None = None
    best: JobBest | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    mlflow_url: str | None = None
    group_id: str | None = None
    labels: list[str] | None = None
    data_erased: bool = False  # images it trained on were erased since; it is not retrained
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def calibration(self) -> Calibration | None:
        """ECE, Brier and reliability bins on test, per label (a succeeded job's result)."""
        found = (self.result or {}).get("calibration")
        return Calibration.model_validate(found) if found else None

    @property
    def operating_points(self) -> OperatingPoints | None:
        """Thresholds chosen on validation (Youden, target sensitivity/specificity) and test results."""
        found = (self.result or {}).get("operating_points")
        return OperatingPoints.model_validate(found) if found else None

    @property
    def subgroups(self) -> Subgroups | None:
        """Test metrics per subgroup (sex, age band, view position, modality) with CIs and flags."""
        found = (self.result or {}).get("subgroups")
        return Subgroups.model_validate(found) if found else None


# --- clinical evaluation (a job's result; GET /v1/models/{name}/compare) ------------------------


class ReliabilityBin(Resource):
    bin: list[float]
    count: int
    mean_predicted: float
    observed: float


class LabelCalibration(Resource):
    ece: float
    brier: float
    reliability: list[ReliabilityBin] = Field(default_factory=list)
    temperature: float | None = None  # fitted on validation
    ece_scaled: float | None = None
    brier_scaled: float | None = None


class Calibration(Resource):
    n_bins: int
    per_label: dict[str, LabelCalibration]
    macro: dict[str, float] = Field(default_factory=dict)


class OperatingPoint(Resource):
    name: str  # youden | sensitivity_0.90 | specificity_0.95 | ...
    method: str
    target: float | None = None
    threshold: float
    validation: dict[str, float | None]
    test: dict[str, float | None]
    test_ci95: dict[str, list[float] | None]


class OperatingPoints(Resource):
    targets: list[float] = Field(default_factory=list)
    per_label: dict[str, list[OperatingPoint]]


class Subgroup(Resource):
    value: str
    n: int
    n_positive: dict[str, int] = Field(default_factory=dict)
    macro: dict[str, float | None] = Field(default_factory=dict)
    per_label: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    ci95: dict[str, Any] = Field(default_factory=dict)
    below_overall: list[str] = Field(default_factory=list)  # "macro" and labels whose AUROC CI is below


class SubgroupFlag(Resource):
    attribute: str
    value: str
    labels: list[str]


class Subgroups(Resource):
    attributes: dict[str, list[Subgroup]] = Field(default_factory=dict)
    flagged: list[SubgroupFlag] = Field(default_factory=list)
    n_resamples: int | None = None


class ReportRow(Resource):
    label: str  # "macro" or a label
    auroc: float | None = None
    auprc: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    f1: float | None = None
    ci95: dict[str, list[float] | None] = Field(default_factory=dict)


class JobReport(Resource):
    """GET /v1/fine-tuning/jobs/{id}/report.json: the job report's figures as data."""

    format: str
    job_id: str
    labels: list[str]
    n_test: int
    thresholds: dict[str, float] = Field(default_factory=dict)
    table: list[ReportRow] = Field(default_factory=list)
    curves: dict[str, dict[str, Any]] = Field(default_factory=dict)  # label -> {roc, pr}
    reliability: dict[str, list[ReliabilityBin]] = Field(default_factory=dict)
    calibration: dict[str, dict[str, Any]] = Field(default_factory=dict)
    operating_points: dict[str, list[OperatingPoint]] = Field(default_factory=dict)
    subgroups: list[dict[str, Any]] = Field(default_factory=list)
    flagged_subgroups: list[SubgroupFlag] = Field(default_factory=list)

    def markdown(self) -> str:
        """The test table in the white paper's columns (AUROC, AUPRC, sensitivity, specificity, F1), as
        a README's markdown table; a missing value or CI is "n/a"."""
        columns = ("auroc", "auprc", "sensitivity", "specificity", "f1")

        def cell(row: ReportRow, m: str) -> str:
            v, ci = getattr(row, m), row.ci95.get(m)
            text = "n/a" if v is None else f"{v:.3f}"
            return text if not ci else f"{text} ({ci[0]:.3f}-{ci[1]:.3f})"

        names = ("AUROC", "AUPRC", "Sensitivity", "Specificity", "F1")
        lines = ["| Label | " + " | ".join(names) + " |",
                 "|---" * (len(columns) + 1) + "|"]  # fmt: skip
        lines += [f"| {r.label} | " + " | ".join(cell(r, m) for m in columns) + " |" for r in self.table]
        return "\n".join(lines) + "\n"


class LabelComparison(Resource):
    n: int
    n_positive: int
    delong: dict[str, Any] | None = None  # auroc_a, auroc_b, difference (b - a), se, ci95, z, p_value
    thresholds: dict[str, float] = Field(default_factory=dict)
    mcnemar: dict[str, Any] = Field(default_factory=dict)


class ModelComparison(Resource):
    model: str
    a: dict[str, Any]
    b: dict[str, Any]
    split_id: str | None = None
    n_test: int
    per_label: dict[str, LabelComparison]


class JobEvent(Resource):
    id: str | None = None
    level: str = "info"
    type: str = "message"
    message: str = ""
    data: dict[str, Any] | None = None
    created_at: datetime | None = None


class Checkpoint(Resource):
    id: str | None = None
    epoch: int
    step: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    is_best: bool = False
    sha256: str | None = None
    size_bytes: int | None = None
    created_at: datetime | None = None


class JobGroup(Resource):
    id: str
    split_seeds: list[int] = Field(default_factory=list)
    jobs: list[Job] = Field(default_factory=list)
    status: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def done(self) -> bool:
        """Every job has ended (status `succeeded` or `completed_with_failures`)."""
        return self.status not in (None, "running")

    def metric(self, name: str = "test_auroc") -> dict[str, Any]:
        """`{n, mean, sd, ci95}` of a test metric over the jobs that succeeded."""
        found = self.summary.get("metrics", {}).get(name)
        return dict(found) if isinstance(found, dict) else {"n": 0, "mean": None, "sd": None, "ci95": None}


class BaseModelEntry(Resource):
    """A catalog entry (architecture) or a registered checkpoint for one."""

    id: str
    name: str
    architecture: str
    input_size: int | None = None
    family: str | None = None
    description: str | None = None
    weights: str = "pretrained"  # what a job's `weights` field takes for this entry
    weights_available: bool = False
    group: str | None = None  # "radiography foundation models", "general vision", "tests"
    license: str | None = None
    pretraining: str | None = None
    input_convention: str | None = None
    weights_format: str | None = None  # timm, transformers, open_clip, torchxrayvision (safetensors/pth)
    weights_files: list[str] | None = None  # what to bring to register without the hub
    weights_source: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    created_at: datetime | None = None


# --- registry and inference ----------------------------------------------------------------


class ModelVersion(Resource):
    id: str
    model: str
    version: int
    ref: str  # name:N
    status: str  # ready | archived
    job_id: str | None = None
    epoch: int | None = None
    aliases: list[str] = Field(default_factory=list)
    test_auroc: float | None = None
    mlflow_version: str | None = None
    loaded: bool = False
    manifest: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    archived_at: datetime | None = None
    data_erased: bool = False  # trained on images erased since: no alias may point at it


class Erasure(Resource):
    """What one erasure removed; `target` is the image id, the dataset id or the patient's pseudonym."""

    id: str
    kind: str  # image | dataset | patient
    target: str
    dataset_id: str | None = None
    # images, studies, labels, objects, mlflow_artifacts; *_marked: versions, splits, jobs, model versions
    removed: dict[str, int] = Field(default_factory=dict)
    created_at: datetime | None = None


class RegisteredModel(Resource):
    id: str
    name: str
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict)
    serving: ModelVersion | None = None  # what `name` alone resolves to (in `models.get`)
    created_at: datetime | None = None


class Prediction(Resource):
    probabilities: dict[str, float]
    predicted: dict[str, bool] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    positive: dict[str, bool] = Field(default_factory=dict)  # at the version's promoted operating point
    operating_point: dict[str, Any] | None = None  # {name, thresholds}
    calibration: str = "none"  # "temperature": probabilities are temperature-scaled
    heatmap_png_base64: str | None = None


class PredictResult(Resource):
    model: str
    version: int
    predictions: list[Prediction]


class BatchPrediction(Resource):
    id: str
    model: str
    version: int
    dataset_id: str
    split_id: str
    split: str
    status: str
    count: int | None = None
    metrics: dict[str, Any] | None = None
    output_key: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


# --- pages ----------------------------------------------------------------------------------


class PageData(BaseModel, Generic[T]):
    """One page of a list: `{data, has_more, first_id, last_id}`."""

    model_config = ConfigDict(extra="allow")

    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
