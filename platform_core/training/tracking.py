"""Experiment tracking behind one protocol: MLflow (batched, on a background thread) and a null tracker.

Training calls log_metrics once per epoch; the MLflow tracker queues the values and a thread sends them
with log_batch, so a slow tracking server never stalls a training step.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("medtune.training")

MAX_PARAM_CHARS = 6000


@runtime_checkable
class Tracker(Protocol):
    run_id: str | None
    experiment_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, name: str, data: bytes) -> None: ...

    def log_missing_epochs(self, history: dict[int, dict[str, float]]) -> None:
        """Epochs checkpointed by a worker that was killed before it sent their metrics: sent now."""
        ...

    def url(self) -> str | None: ...

    def close(self, status: str = "FINISHED") -> None:
        """Send everything queued, end the run with FINISHED, FAILED or KILLED."""
        ...


class NullTracker:
    run_id: str | None = None
    experiment_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, name: str, data: bytes) -> None:
        pass

    def log_missing_epochs(self, history: dict[int, dict[str, float]]) -> None:
        pass

    def url(self) -> str | None:
        return None

    def close(self, status: str = "FINISHED") -> None:
        pass


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts.

    A tracking server decides for itself. A local SQLite store would otherwise default to ./mlruns in
    whatever folder the worker started from; keep the artifacts beside the store instead.
    """
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent.joinpath("mlflow-artifacts").as_uri()
    return None


class MlflowTracker:
    """One MLflow run; metrics, params and tags go out in batches from a daemon thread."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        ui_url: str | None = None,
        run_id: str | None = None,
        flush_interval_s: float = 1.0,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.ui_url = ui_url.rstrip("/") if ui_url else None
        if run_id is not None:  # a resumed job continues its run
            run = self.client.get_run(run_id)
            self.experiment_id: str | None = run.info.experiment_id
            if run.info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
        else:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found
                else self.client.create_experiment(
                    experiment, artifact_location=artifact_location(tracking_uri)
                )
            )
            run = self.client.create_run(self.experiment_id, run_name=run_name)
        self.run_id: str | None = run.info.run_id
        self.flush_interval_s = flush_interval_s
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.seconds_spent = 0.0  # time the caller's thread spent in this tracker, for the benchmark
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="mlflow-tracker", daemon=True)
        self._thread.start()

    def _timed(self, kind: str, payload: Any) -> None:
        start = time.perf_counter()
        self.queue.put((kind, payload))
        self.seconds_spent += time.perf_counter() - start

    def log_params(self, params: dict[str, Any]) -> None:
        self._timed("params", {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._timed("tags", dict(tags))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._timed("metrics", (dict(metrics), step, int(time.time() * 1000)))

    def log_artifact(self, name: str, data: bytes) -> None:
        self._timed("artifact", (name, data))

    def log_missing_epochs(self, history: dict[int, dict[str, float]]) -> None:
        # Metrics leave on a background thread after the epoch's checkpoint is committed, so a SIGKILL
        # can lose the last epoch's values; its checkpoint row still holds them. Log each epoch once.
        if not history or self.run_id is None:
            return
        try:
            logged = {m.step for m in self.client.get_metric_history(self.run_id, "train_loss")}
        except Exception as exc:  # tracking must never fail a training run
            log.warning("could not read the MLflow run back: %s", exc)
            return
        for epoch in sorted(set(history) - logged):
            self.log_metrics(history[epoch], step=epoch)

    def url(self) -> str | None:
        if self.ui_url is None or self.run_id is None:
            return None
        return f"{self.ui_url}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def _drain(self) -> None:
        while True:
            stop = self._closed.wait(self.flush_interval_s)
            self._send_pending()
            if stop:
                return

    def _send_pending(self) -> None:
        from mlflow.entities import Metric, Param, RunTag

        metrics: list[Metric] = []
        params: list[Param] = []
        tags: list[RunTag] = []
        artifacts: list[tuple[str, bytes]] = []
        while True:
            try:
                kind, payload = self.queue.get_nowait()
            except queue.Empty:
                break
            if kind == "metrics":
                values, step, ts = payload
                metrics.extend(Metric(k, float(v), ts, step) for k, v in values.items())
            elif kind == "params":
                params.extend(Param(k, v) for k, v in payload.items())
            elif kind == "tags":
                tags.extend(RunTag(k, v) for k, v in payload.items())
            else:
                artifacts.append(payload)
        assert self.run_id is not None
        try:
            # log_batch takes at most 1000 metrics, 100 params and 100 tags per call.
            for i in range(0, len(metrics), 1000):
                self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])
            for i in range(0, max(len(params), len(tags)), 100):
                self.client.log_batch(self.run_id, params=params[i : i + 100], tags=tags[i : i + 100])
            for name, data in artifacts:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / Path(name).name
                    path.write_bytes(data)
                    parent = str(Path(name).parent)
                    self.client.log_artifact(self.run_id, str(path), None if parent == "." else parent)
        except Exception as exc:  # tracking must never fail a training run
            log.warning("MLflow logging failed: %s: %s", type(exc).__name__, exc)

    def close(self, status: str = "FINISHED") -> None:
        self._closed.set()
        self._thread.join(timeout=120)
        if self.run_id is not None:
            try:
                self.client.set_terminated(self.run_id, status=status)
            except Exception as exc:
                log.warning("could not end the MLflow run: %s", exc)
