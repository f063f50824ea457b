"""The MLflow tracker batches on a thread yet lands one value per epoch per metric; null does nothing."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from platform_core.training.tracking import MlflowTracker, NullTracker, Tracker


def test_mlflow_tracker_round_trip(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.sqlite'}"
    tracker = MlflowTracker(uri, "exp", "ftjob_x", ui_url="http://ui/", flush_interval_s=0.05)
    assert isinstance(tracker, Tracker)
    tracker.log_params({"lr": 0.001, "method": "lora"})
    tracker.set_tags({"medtune.split_sha256": "abc"})
    for epoch in (1, 2, 3):
        tracker.log_metrics({"val_auroc": 0.5 + epoch / 10, "train_loss": 1.0 / epoch}, step=epoch)
    tracker.log_artifact("metrics.json", b"{}")
    tracker.close()
    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id or "")
    assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.001"
    assert run.data.tags["medtune.split_sha256"] == "abc"
    history = client.get_metric_history(run.info.run_id, "val_auroc")
    assert [(m.step, round(m.value, 3)) for m in sorted(history, key=lambda m: m.step)] == [
        (1, 0.6), (2, 0.7), (3, 0.8)
    ]  # fmt: skip
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]
    # Artifacts sit beside the SQLite store, never in ./mlruns of whatever folder the worker started in.
    assert (tmp_path / "mlflow-artifacts" / run.info.run_id / "artifacts" / "metrics.json").exists()
    assert not (Path.cwd() / "mlruns").exists()
    assert tracker.url() == f"http://ui/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    resumed = MlflowTracker(uri, "exp", "ftjob_x", run_id=run.info.run_id)
    assert resumed.run_id == run.info.run_id
    # A killed worker checkpointed epoch 4 but never sent it: sent once on resume, 1-3 not again.
    history_in_checkpoints = {e: {"val_auroc": 0.5 + e / 10, "train_loss": 1.0 / e} for e in (1, 2, 3, 4)}
    resumed.log_missing_epochs(history_in_checkpoints)
    resumed.close("KILLED")
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss"))
    assert steps == [1, 2, 3, 4]
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def test_null_tracker_is_a_tracker() -> None:
    null = NullTracker()
    assert isinstance(null, Tracker) and null.url() is None
    null.log_metrics({"x": 1.0}, step=1)
    null.close()
