"""The training loop: mixed precision, gradient clipping, cosine schedule with warmup, cancel per step,
validation and checkpoint each epoch, early stopping, resume from a checkpoint."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from platform_core.training import metrics as M
from platform_core.training.checkpoints import Checkpoint, rng_state, set_rng_state
from platform_core.training.data import Normalize
from platform_core.training.network import load_trainable_state, trainable_state

log = logging.getLogger("medtune.training")

CHECKPOINT_METRICS = {"val_auroc": "max", "val_auprc": "max", "val_loss": "min"}


@lru_cache
def cpu_supports_bf16() -> bool:
    """AVX-512 BF16 or AMX: where bf16 autocast is fast on a CPU (elsewhere it is emulated and slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


@dataclass
class LoopConfig:
    epochs: int
    learning_rate: float
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    early_stopping_patience: int | None = None
    checkpoint_metric: str = "val_auroc"
    grad_clip: float = 1.0
    precision: str = "auto"
    device: str = "auto"
    pos_weight: list[float] | None = None
    seed: int = 0


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    metrics: dict[str, float]  # flat: val_loss, val_auroc, ... (+ per label)
    detail: dict[str, Any]  # metrics.compute() on validation
    monitored: float
    is_best: bool
    seconds: float
    images_per_second: float


@dataclass
class LoopOutcome:
    status: str  # completed | early_stopped | cancelled
    best_epoch: int | None
    best_value: float | None
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Progress:
    """Early stopping's bookkeeping across epochs; saved in every checkpoint."""

    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    next_epoch: int = 1

    def record(self, epoch: int, monitored: float, mode: str, flat: dict[str, float]) -> bool:
        """Add the epoch's metrics; True when it improved on the best so far."""
        best = self.best_value
        improved = best is None or (monitored > best if mode == "max" else monitored < best)
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = monitored, epoch, 0
        else:
            self.bad_epochs += 1
        self.history.append({"epoch": epoch, **flat})
        return improved

    def outcome(self, status: str, epochs_run: int) -> LoopOutcome:
        return LoopOutcome(status, self.best_epoch, self.best_value, epochs_run, self.history)


class Batches(Protocol):
    """What the loop iterates: (x, y) batches, a length, and the generator reseeded each epoch."""

    generator: torch.Generator | None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...


class Hooks(Protocol):
    def should_stop(self) -> bool:
        """Checked before every step: True cancels the run (the current epoch is not checkpointed)."""
        ...

    def on_step(self, epoch: int, step: int, steps: int) -> None: ...

    def on_epoch(self, result: EpochResult, checkpoint: Checkpoint) -> None: ...


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        label_names: list[str],
        cfg: LoopConfig,
    ) -> None:
        self.cfg = cfg
        if cfg.checkpoint_metric not in CHECKPOINT_METRICS:
            raise ValueError(f"checkpoint_metric must be one of {', '.join(CHECKPOINT_METRICS)}")
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(self.device, cfg.precision)
        self.model = model.to(self.device)
        self.normalize = Normalize(mean, std).to(self.device)
        self.label_names = label_names
        pos_weight = torch.tensor(cfg.pos_weight, device=self.device) if cfg.pos_weight else None
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        self.eval_loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="sum")
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.scheduler: Any = None

    def autocast(self) -> Any:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.normalize(x.to(self.device, non_blocking=True))  # Module.__call__ is Any
        return out

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimisation step; returns the loss (a device tensor: reading it would synchronise)."""
        y = y.to(self.device, non_blocking=True)
        with self.autocast():
            logits = self.model(self._inputs(x))
        loss: torch.Tensor = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.grad_clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()

    @torch.no_grad()
    def predict(self, loader: Batches) -> tuple[np.ndarray, np.ndarray, float]:
        """(labels, probabilities, mean loss) over a loader, in eval mode."""
        self.model.eval()
        probs, labels = [], []
        total, count = 0.0, 0
        for x, y in loader:
            with self.autocast():
                logits = self.model(self._inputs(x)).float()
            yd = y.to(self.device)
            total += float(self.eval_loss_fn(logits, yd)) / yd.shape[1]
            count += len(y)
            probs.append(torch.sigmoid(logits).cpu().numpy())
            labels.append(y.numpy())
        self.model.train()
        return np.concatenate(labels), np.concatenate(probs), total / max(count, 1)

    def fit(
        self,
        train_loader: Batches,
        val_loader: Batches,
        hooks: Hooks,
        resume: Checkpoint | None = None,
    ) -> LoopOutcome:
        cfg = self.cfg
        steps = len(train_loader)
        self.scheduler = cosine_with_warmup(
            self.optimizer, int(round(cfg.warmup_epochs * steps)), max(1, cfg.epochs * steps)
        )
        progress = self._resume(resume) if resume is not None else _Progress()
        self.model.train()
        for epoch in range(progress.next_epoch, cfg.epochs + 1):
            started = time.perf_counter()
            trained = self._train_epoch(train_loader, epoch, hooks)
            if trained is None:
                return progress.outcome("cancelled", epoch - 1)
            train_loss, seen = trained
            train_seconds = time.perf_counter() - started
            flat, detail, monitored = self._validate(val_loader, train_loss)
            improved = progress.record(epoch, monitored, CHECKPOINT_METRICS[cfg.checkpoint_metric], flat)
            result = EpochResult(
                epoch=epoch,
                train_loss=train_loss,
                metrics=flat,
                detail=detail,
                monitored=monitored,
                is_best=improved,
                seconds=time.perf_counter() - started,
                images_per_second=seen / train_seconds if train_seconds > 0 else 0.0,
            )
            hooks.on_epoch(result, Checkpoint(epoch, trainable_state(self.model), self._state(progress)))
            patience = cfg.early_stopping_patience
            if patience is not None and progress.bad_epochs >= patience and epoch < cfg.epochs:
                return progress.outcome("early_stopped", epoch)
        return progress.outcome("completed", cfg.epochs)

    def _resume(self, resume: Checkpoint) -> _Progress:
        """Weights, optimiser, schedule, scaler and random state as the checkpoint left them."""
        load_trainable_state(self.model, resume.weights)
        self.optimizer.load_state_dict(resume.state["optimizer"])
        self.scheduler.load_state_dict(resume.state["scheduler"])
        if resume.state.get("scaler"):
            self.scaler.load_state_dict(resume.state["scaler"])
        set_rng_state(resume.state["rng"])
        loop = resume.state["loop"]
        return _Progress(
            best_value=loop["best_value"],
            best_epoch=loop["best_epoch"],
            bad_epochs=loop["bad_epochs"],
            history=list(loop.get("history", [])),
            next_epoch=resume.epoch + 1,
        )

    def _train_epoch(self, train_loader: Batches, epoch: int, hooks: Hooks) -> tuple[float, int] | None:
        """(mean training loss, images seen), or None when the run was cancelled during the epoch."""
        # The shuffle order depends on (seed, epoch) only, so a resumed run sees the same batches.
        if train_loader.generator is not None:
            train_loader.generator.manual_seed(self.cfg.seed * 1000 + epoch)
        steps = len(train_loader)
        losses: list[torch.Tensor] = []
        seen = 0
        for step, (x, y) in enumerate(train_loader, start=1):
            if hooks.should_stop():
                return None
            losses.append(self.train_step(x, y))
            seen += len(x)
            hooks.on_step(epoch, step, steps)
        return (float(torch.stack(losses).mean()) if losses else math.nan), seen

    def _validate(
        self, val_loader: Batches, train_loss: float
    ) -> tuple[dict[str, float], dict[str, Any], float]:
        """(flat metrics, metrics.compute() detail, the monitored value) on the validation split."""
        y_true, y_prob, val_loss = self.predict(val_loader)
        detail = M.compute(y_true, y_prob, self.label_names)
        flat = {"train_loss": train_loss, "val_loss": val_loss, **M.flat(detail, "val")}
        flat["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        monitored = flat.get(self.cfg.checkpoint_metric, math.nan)
        if math.isnan(monitored) and self.cfg.checkpoint_metric != "val_loss":
            monitored = -val_loss  # a validation split with one class has no AUROC: fall back to loss
        return flat, detail, monitored

    def _state(self, progress: _Progress) -> dict[str, Any]:
        """Everything but the weights that a resumed run needs to continue as if never stopped."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng_state(),
            "loop": {
                "best_value": progress.best_value,
                "best_epoch": progress.best_epoch,
                "bad_epochs": progress.bad_epochs,
                "history": progress.history,
            },
        }
