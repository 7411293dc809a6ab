"""The training loop, on Hugging Face Accelerate: one code path for CPU, GPUs and many processes.

Gradient accumulation, mixed precision, LR schedules, seeded determinism, atomic
checkpoints with exact resume, a NaN guard, a progress bar and metric logs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from distill.data import collate_batches
from distill.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from distill.engine.config import TrainConfig
from distill.engine.metrics_log import MetricsLog
from distill.engine.progress import progress_bar
from distill.engine.sampler import EpochShuffleSampler
from distill.errors import CheckpointError, ConfigError, NonFiniteLossError

Evaluator = Callable[[nn.Module, Accelerator], dict[str, float]]


@dataclass
class TrainResult:
    """What a finished run reports."""

    steps: int
    final: dict[str, float]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0
    checkpoint: Path | None = None


def make_accelerator(config: TrainConfig, run_dir: Path) -> Accelerator:
    """An Accelerator whose ``batch_size`` is global (split between processes)."""
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU.")
    # Accelerate keeps one global state per process; a run (e.g. the teacher in bf16, then a
    # student in fp32) gets its own settings, while the process group (PartialState) stays.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(
        # Without a GPU, say so: Accelerate then runs several launched processes over gloo.
        cpu=not torch.cuda.is_available(),
        mixed_precision=precision,
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with="tensorboard" if config.tensorboard else None,
        project_dir=str(run_dir),
    )


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with momentum, as ``config`` says."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total: int):
    """Linear warm-up, then constant, cosine or linear decay to zero over ``total`` steps."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if config.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable_weights(objective: nn.Module) -> dict[str, torch.Tensor]:
    """Weights a run changes; a Distiller's frozen teacher is left out."""
    state = objective.state_dict()
    return {k: v for k, v in state.items() if ".teacher." not in f".{k}"}


def _check_finite(values: dict[str, torch.Tensor], step: int, last: Path | None) -> None:
    loss = values["loss"]
    if not torch.isfinite(loss).all():
        parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in values.items())
        kept = f"the last good checkpoint is kept at {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"the loss became non-finite at step {step} ({parts}); training stopped and {kept}. "
            "Lower the learning rate, enable max_grad_norm, or check the inputs for NaN/inf."
        )


def train(
    objective: nn.Module,
    train_set: Dataset,
    config: TrainConfig,
    run_dir: Path,
    evaluator: Evaluator | None = None,
    resume: bool = False,
    description: str = "train",
) -> TrainResult:
    """Optimise ``objective`` (``forward(x, y) -> {"loss": ..}``) on ``train_set`` for ``config``'s budget.

    Checkpoints go to ``run_dir/checkpoints``; with ``resume`` the newest one is
    restored (weights, optimizer, scheduler, RNG, data position) and the run goes on
    exactly as if it had never stopped.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if len(train_set) < config.batch_size:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(train_set)} training samples; lower it.")
    accelerator = make_accelerator(config, run_dir)
    if config.batch_size % accelerator.num_processes:
        raise ConfigError(f"batch_size {config.batch_size} must divide evenly between {accelerator.num_processes} processes.")
    set_seed(config.seed)
    sampler = EpochShuffleSampler(len(train_set), config.seed)
    # Its own generator: starting an iterator must not draw from the global RNG (exact resume).
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True,
                        collate_fn=collate_batches, generator=torch.Generator().manual_seed(config.seed))
    total = config.total_steps(len(loader))
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    scheduler = make_schedule(optimizer, config, total)
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    ckpt_dir = run_dir / "checkpoints"
    log = MetricsLog(run_dir, resume=resume) if accelerator.is_main_process else None
    if config.tensorboard:
        accelerator.init_trackers(description)

    step, micro, last_ckpt = 0, 0, None
    if resume:
        last_ckpt = latest_checkpoint(ckpt_dir)
        if last_ckpt is None:
            raise CheckpointError(f"--resume: no checkpoint under {ckpt_dir}; run without --resume to start.")
        unwrapped = accelerator.unwrap_model(objective)
        ckpt = load_checkpoint(last_ckpt, expected=_trainable_weights(unwrapped))
        unwrapped.load_state_dict(ckpt.weights, strict=False)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        scheduler.load_state_dict(ckpt.state["scheduler"])
        _set_rng_state(ckpt.state["rng"])
        step, micro = ckpt.step, ckpt.step * config.grad_accum
        if log is not None:
            log.truncate_after(step)

    def checkpoint() -> Path | None:
        nonlocal last_ckpt
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()}
            weights = _trainable_weights(accelerator.unwrap_model(objective))
            last_ckpt = save_checkpoint(ckpt_dir, step, weights, state, {"description": description}, config.keep_checkpoints)
        return last_ckpt

    def evaluate() -> dict[str, float]:
        if evaluator is None:
            return {}
        unwrapped = accelerator.unwrap_model(objective)
        unwrapped.eval()
        metrics = evaluator(unwrapped.model, accelerator)
        unwrapped.train()
        return metrics

    history: list[dict] = [] if log is None else list(log.rows)
    objective.train()
    started, samples_seen, running, running_n = time.perf_counter(), 0, {}, 0
    per_epoch = len(loader)
    with progress_bar(description, total, completed=step, enabled=config.progress and accelerator.is_local_main_process) as bar:
        while step < total:
            epoch, skip = divmod(micro, per_epoch)
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
            batches.set_epoch(epoch)  # Accelerate's loaders otherwise count epochs themselves,
            sampler.set_epoch(epoch)  # and a skipping loader does not pass the epoch on.
            for x, y in batches:
                with accelerator.accumulate(objective):
                    values = objective(x, y)
                    _check_finite(values, step + 1, last_ckpt)
                    accelerator.backward(values["loss"])
                    if accelerator.sync_gradients and config.max_grad_norm:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                micro += 1
                samples_seen += config.batch_size
                running_n += 1
                for key, value in values.items():
                    running[key] = running.get(key, 0.0) + float(value.detach())
                if micro % config.grad_accum:
                    continue
                scheduler.step()
                step += 1
                row = None
                if step % config.log_every == 0 or step == total:
                    means = {f"train_{k}": v / running_n for k, v in running.items()}
                    row = {"step": step, **means, "lr": scheduler.get_last_lr()[0]}
                    running, running_n = {}, 0
                if (config.eval_every and step % config.eval_every == 0) or step == total:
                    row = {**(row or {"step": step}), **evaluate()}
                if row is not None:
                    elapsed = time.perf_counter() - started
                    row["samples_per_s"] = samples_seen / max(elapsed, 1e-9)
                    history.append(row)
                    if log is not None:
                        log.log(row)
                    if config.tensorboard:
                        accelerator.log({k: v for k, v in row.items() if k != "step"}, step=step)
                    bar.update(step, row)
                else:
                    bar.update(step)
                if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == total:
                    checkpoint()
                if step >= total:
                    break
    seconds = time.perf_counter() - started
    if config.tensorboard:
        accelerator.end_training()
    final = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
    return TrainResult(step, final, history, seconds, samples_seen / max(seconds, 1e-9), last_ckpt)
