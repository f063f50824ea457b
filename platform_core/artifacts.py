"""The artifact contract: what a training run leaves (`AdapterConfig`) and what a model version serves
from (`ModelManifest`), their file names and format versions. Only this module builds or parses their
JSON: `from_json` fails on a missing key and warns on an unknown one (peft's PeftConfigMixin
discipline); `ModelManifest.from_stored` reads every manifest stored so far, older shapes included."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from platform_core.errors import Invalid
from platform_core.storage import ObjectStore
from platform_core.training.weights import BASE_MODEL_PREFIX, RANDOM

log = logging.getLogger("medtune.artifacts")

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
CHECKPOINT_FILE = "adapter.safetensors"  # each epoch's trainable weights (training.checkpoints)
MANIFEST_FILE = "manifest.json"
ADAPTER_FORMAT = "medtune-adapter/2"  # 1: flat method, base fields at the top, partial preprocessing
MODEL_FORMAT = "medtune-model/1"
DEFAULT_THRESHOLD = 0.5
PIXEL_PIPELINE = (
    "dicom.pixels.decode|decode_image -> to_cache -> data.resize_uint16 -> /65535 -> Normalize(mean, std)"
)
METHODS = ("lora", "full", "linear_probe")


class ArtifactError(ValueError):
    """A stored artifact lacks what its format requires."""


def _keys(
    d: Mapping[str, Any], where: str, required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    missing = required - set(d)
    if missing:
        raise ArtifactError(f"{where} lacks {', '.join(sorted(missing))}")
    unknown = set(d) - required - optional
    if unknown:
        log.warning("%s: ignoring unknown keys %s", where, ", ".join(sorted(unknown)))


# --- parts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """How the backbone was adapted; LoRA's rank, alpha and dropout (kept for every type)."""

    type: str = "lora"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.type not in METHODS:
            raise Invalid(f"method.type must be one of {', '.join(METHODS)}", param="method.type")

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "lora": {"r": self.r, "alpha": self.alpha, "dropout": self.dropout}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Method:
        _keys(d, "method", {"type", "lora"})
        lora = d["lora"]
        _keys(lora, "method.lora", {"r", "alpha", "dropout"})
        return cls(str(d["type"]), int(lora["r"]), int(lora["alpha"]), float(lora["dropout"]))


@dataclass(frozen=True)
class BaseWeights:
    """The backbone an adapter sits on: catalog entry, and which weights (pretrained, random, `bm_...`)."""

    backbone: str
    arch: str
    family: str
    weights: str
    weights_sha256: str | None
    object_key: str | None = None  # registered weights
    format: str | None = None
    seed: int | None = None  # random weights: training seeds torch with it right before building

    @property
    def registered(self) -> bool:
        return self.weights.startswith(BASE_MODEL_PREFIX)

    def identity(self) -> str:
        """What tells two bases apart in the serving engine's cache."""
        if self.weights_sha256:
            return self.weights_sha256
        if self.weights == RANDOM:
            return f"random-seed-{self.seed}"
        return f"pretrained-{self.arch}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"backbone": self.backbone, "arch": self.arch, "family": self.family,
                             "weights": self.weights, "weights_sha256": self.weights_sha256}  # fmt: skip
        if self.registered:
            d.update(object_key=self.object_key, format=self.format)
        elif self.weights == RANDOM:
            d["seed"] = self.seed
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BaseWeights:
        _keys(d, "base", {"backbone", "arch", "family", "weights", "weights_sha256"},
              frozenset({"object_key", "format", "seed"}))  # fmt: skip
        seed = d.get("seed")
        return cls(str(d["backbone"]), str(d["arch"]), str(d["family"]), str(d["weights"]),
                   d["weights_sha256"], d.get("object_key"), d.get("format"),
                   None if seed is None else int(seed))  # fmt: skip


@dataclass(frozen=True)
class Preprocessing:
    """The pixel pipeline settings a model version was trained with (platform_core.inference.preprocess
    applies them). A field added here travels in every adapter config and manifest with no other edit:
    the JSON walks the fields. Give it a default: artifacts stored before it existed read with it."""

    cache_size: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    min_image_size: int = 128
    modalities: tuple[str, ...] = ("CR", "DX")
    burned_in_annotation: str = "reject"


def preprocessing_to_json(p: Preprocessing) -> dict[str, Any]:
    d = {f.name: _plain(getattr(p, f.name)) for f in fields(p)}
    return {**d, "pixel_pipeline": PIXEL_PIPELINE}


def preprocessing_from_json(d: Mapping[str, Any]) -> Preprocessing:
    """A field without a default must be there; one with a default reads as it when absent."""
    required = {f.name for f in fields(Preprocessing) if f.default is MISSING}
    optional = frozenset(f.name for f in fields(Preprocessing)) | {"pixel_pipeline"}
    _keys(d, "preprocessing", required, optional)
    values: dict[str, Any] = {f.name: _typed(d[f.name]) for f in fields(Preprocessing) if f.name in d}
    return Preprocessing(**values)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _typed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _targets(value: Any) -> tuple[str, ...] | str:
    return value if isinstance(value, str) else tuple(value)


def _task(labels: tuple[str, ...]) -> str:
    return "binary" if len(labels) == 1 else "multilabel"


# --- the adapter ------------------------------------------------------------------------------

_ADAPTER_KEYS = {"format", "base", "method", "lora_targets", "classifier", "labels", "task", "preprocessing",
                 "thresholds", "adapter_sha256", "job_id", "epoch"}  # fmt: skip


@dataclass(frozen=True)
class AdapterConfig:
    """Trainable weights' sidecar: everything it takes to rebuild the model and preprocess its input."""

    base: BaseWeights
    method: Method
    lora_targets: tuple[str, ...] | str
    classifier: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    thresholds: Mapping[str, float]
    adapter_sha256: str
    job_id: str
    epoch: int

    @property
    def task(self) -> str:
        return _task(self.labels)

    def threshold(self, label: str) -> float:
        return float(self.thresholds.get(label, DEFAULT_THRESHOLD))

    def to_json(self) -> dict[str, Any]:
        return {"format": ADAPTER_FORMAT, **self._shared(), "adapter_sha256": self.adapter_sha256,
                "job_id": self.job_id, "epoch": self.epoch}  # fmt: skip

    def _shared(self) -> dict[str, Any]:
        """The keys an adapter config and a model manifest hold alike."""
        targets = self.lora_targets
        return {
            "base": self.base.to_json(),
            "method": self.method.to_json(),
            "lora_targets": targets if isinstance(targets, str) else list(targets),
            "classifier": self.classifier,
            "labels": list(self.labels),
            "task": self.task,
            "preprocessing": preprocessing_to_json(self.preprocessing),
            "thresholds": dict(self.thresholds),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AdapterConfig:
        _keys(d, "adapter config", _ADAPTER_KEYS)
        _format(d, ADAPTER_FORMAT)
        return cls._parse(d, str(d["adapter_sha256"]), str(d["job_id"]), int(d["epoch"]))

    @classmethod
    def _parse(cls, d: Mapping[str, Any], sha256: str, job_id: str, epoch: int) -> AdapterConfig:
        labels = tuple(str(x) for x in d["labels"])
        return cls(
            base=BaseWeights.from_json(d["base"]),
            method=Method.from_json(d["method"]),
            lora_targets=_targets(d["lora_targets"]),
            classifier=str(d["classifier"]),
            labels=labels,
            preprocessing=preprocessing_from_json(d["preprocessing"]),
            thresholds={str(k): float(v) for k, v in d["thresholds"].items()},
            adapter_sha256=sha256,
            job_id=job_id,
            epoch=epoch,
        )


def _format(d: Mapping[str, Any], expected: str) -> None:
    if d["format"] != expected:
        raise ArtifactError(f"format {d['format']!r} is not {expected!r}")


# --- the model manifest -----------------------------------------------------------------------

_MANIFEST_KEYS = (_ADAPTER_KEYS - {"adapter_sha256"}) | {
    "id", "model", "version", "adapter", "thresholds_source", "test_metrics", "checkpoint_metric", "split",
    "dataset", "mlflow_run_id",
}  # fmt: skip
# Added to medtune-model/1 with defaults (older manifests load as "no calibration, Youden's point").
_MANIFEST_OPTIONAL = frozenset({"evaluation", "calibration", "operating_point"})
CALIBRATIONS = ("none", "temperature")
NO_CALIBRATION: Mapping[str, Any] = {"method": "none"}


@dataclass(frozen=True)
class ModelManifest:
    """A model version: its adapter, who it is, what it was trained and tested on."""

    adapter: AdapterConfig
    id: str
    model: str
    version: int
    prefix: str  # the version's objects: ADAPTER_FILE and MANIFEST_FILE
    # "validation": Youden's J on the validation split; "pending": being evaluated (the version does not
    # serve yet); "default": 0.5, the epoch could not be evaluated (see `evaluation`).
    thresholds_source: str
    test_metrics: Mapping[str, Any] | None
    checkpoint_metric: str
    split_id: str | None
    split_sha256: str | None
    dataset_id: str
    dataset_version_id: str | None
    mlflow_run_id: str | None
    evaluation: Mapping[str, Any] | None = field(default=None)
    # {"method": "none"} or {"method": "temperature", "temperatures": {label: T}, "fitted_on": ...}: T per
    # label fitted on validation; serving divides the logits by T before the sigmoid.
    calibration: Mapping[str, Any] = field(default_factory=lambda: dict(NO_CALIBRATION))
    # {"name", "thresholds": {label: t}, "chosen_on"}: the operating point chosen at promotion, its
    # thresholds on the uncalibrated probabilities; predictions' `positive` follows it. None: Youden's.
    operating_point: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        method = self.calibration.get("method")
        if method not in CALIBRATIONS:
            raise ArtifactError(f"calibration.method {method!r} is not one of {', '.join(CALIBRATIONS)}")
        if method == "temperature" and any(float(t) <= 0 for t in self.temperatures().values()):
            raise ArtifactError("calibration temperatures must be positive")

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"

    def temperatures(self) -> dict[str, float]:
        """T per label (1.0 where none was fitted, or with calibration off)."""
        on = self.calibration.get("method") == "temperature"
        fitted = (self.calibration.get("temperatures") or {}) if on else {}
        return {label: float(fitted.get(label, 1.0)) for label in self.adapter.labels}

    def served_threshold(self, label: str, threshold: float) -> float:
        """A threshold on the uncalibrated probability, on the scale serving returns: the same decisions,
        since sigmoid(z / T) is monotonic in z."""
        t = self.temperatures().get(label, 1.0)
        if t == 1.0:
            return threshold
        p = min(max(threshold, 1e-7), 1 - 1e-7)
        return 1.0 / (1.0 + math.exp(-math.log(p / (1 - p)) / t))

    def positive_thresholds(self) -> tuple[str, dict[str, float]]:
        """(operating point name, its threshold per label on the served scale) for `positive`."""
        point = self.operating_point or {"name": "youden", "thresholds": {}}
        chosen = point.get("thresholds") or {}
        return str(point["name"]), {
            label: self.served_threshold(label, float(chosen.get(label, self.adapter.threshold(label))))
            for label in self.adapter.labels
        }

    def evaluated(self, evaluation: Mapping[str, Any]) -> ModelManifest:
        """The manifest once the infer worker evaluated the version (registry.evaluate)."""
        rest = dict(evaluation)
        source = str(rest.pop("thresholds_source"))
        adapter = self.adapter
        if "thresholds" in rest:
            adapter = replace(adapter, thresholds=dict(rest.pop("thresholds")))
        metrics = rest.pop("test_metrics") if "test_metrics" in rest else self.test_metrics
        return replace(self, adapter=adapter, thresholds_source=source, test_metrics=metrics, evaluation=rest)

    def to_json(self) -> dict[str, Any]:
        a = self.adapter
        d = {
            "format": MODEL_FORMAT, "id": self.id, "model": self.model, "version": self.version,
            **a._shared(),
            "adapter": {"files": {ADAPTER_FILE: a.adapter_sha256}, "prefix": self.prefix},
            "thresholds_source": self.thresholds_source, "test_metrics": self.test_metrics,
            "job_id": a.job_id, "epoch": a.epoch, "checkpoint_metric": self.checkpoint_metric,
            "split": {"id": self.split_id, "sha256": self.split_sha256},
            "dataset": {"id": self.dataset_id, "version_id": self.dataset_version_id},
            "mlflow_run_id": self.mlflow_run_id,
        }  # fmt: skip
        if self.evaluation is not None:
            d["evaluation"] = dict(self.evaluation)
        d["calibration"] = dict(self.calibration)
        d["operating_point"] = None if self.operating_point is None else dict(self.operating_point)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelManifest:
        _keys(d, "model manifest", _MANIFEST_KEYS, _MANIFEST_OPTIONAL)
        _format(d, MODEL_FORMAT)
        _keys(d["adapter"], "model manifest adapter", {"files", "prefix"})
        adapter = AdapterConfig._parse(d, str(d["adapter"]["files"][ADAPTER_FILE]), str(d["job_id"]),
                                       int(d["epoch"]))  # fmt: skip
        return cls(
            adapter=adapter,
            id=str(d["id"]),
            model=str(d["model"]),
            version=int(d["version"]),
            prefix=str(d["adapter"]["prefix"]),
            thresholds_source=str(d["thresholds_source"]),
            test_metrics=d["test_metrics"],
            checkpoint_metric=str(d["checkpoint_metric"]),
            split_id=d["split"]["id"],
            split_sha256=d["split"]["sha256"],
            dataset_id=str(d["dataset"]["id"]),
            dataset_version_id=d["dataset"]["version_id"],
            mlflow_run_id=d["mlflow_run_id"],
            evaluation=d.get("evaluation"),
            calibration=dict(d.get("calibration") or NO_CALIBRATION),
            operating_point=d.get("operating_point"),
        )

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> ModelManifest:
        """Any manifest a version was ever stored with (`model_versions.manifest`), upgraded first."""
        return cls.from_json(upgrade(stored))


def adapter_config_bytes(config: AdapterConfig) -> bytes:
    """`ADAPTER_CONFIG_FILE`, next to the adapter's weights."""
    return json.dumps(config.to_json(), indent=2).encode()


def store_manifest(store: ObjectStore, manifest: ModelManifest) -> None:
    """`MANIFEST_FILE` in the version's prefix, next to its adapter."""
    data = json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode()
    store.put_bytes(f"{manifest.prefix}/{MANIFEST_FILE}", data, "application/json")


def upgrade(stored: Mapping[str, Any]) -> dict[str, Any]:
    """An older stored manifest in today's shape: a flat `method` ({type, r, alpha, dropout}) nested,
    and the keys later formats added filled with what serving assumed before they existed."""
    d = dict(stored)
    method = dict(d.get("method") or {})
    if "lora" not in method:
        defaults = Method()
        d["method"] = {"type": method.get("type", defaults.type), "lora": {
            "r": method.get("r", defaults.r), "alpha": method.get("alpha", defaults.alpha),
            "dropout": method.get("dropout", defaults.dropout)}}  # fmt: skip
    d["preprocessing"] = dict(d.get("preprocessing") or {})  # its later fields read as their defaults
    d.setdefault("thresholds_source", "validation")  # before non-best epochs, every version had them
    d.setdefault("test_metrics", None)
    d.setdefault("mlflow_run_id", None)
    return d
