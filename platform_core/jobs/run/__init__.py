"""The run a `train` worker executes for one job, as named steps over a `RunContext` (see orchestrator)."""

from platform_core.jobs.run.context import RunOptions, TrackerFactory, mlflow_tracker, null_tracker
from platform_core.jobs.run.orchestrator import run_job

__all__ = ["RunOptions", "TrackerFactory", "mlflow_tracker", "null_tracker", "run_job"]
