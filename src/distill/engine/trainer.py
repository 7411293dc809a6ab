"""The training loop, on Hugging Face Accelerate: one code path for CPU, GPUs and many processes.

Gradient accumulation, mixed precision, LR schedules, seeded determinism, atomic
checkpoints with exact resume, a NaN guard, a progress bar and metric logs.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, DistributedType, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from distill.data import collate_batches
from distill.engine.batches import as_batch, batch_size_of
from distill.engine.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from distill.engine.config import GroupConfig, TrainConfig
from distill.engine.draws import batch_split
from distill.engine.metrics_log import MetricsLog
from distill.engine.placement import check_fits, full_optimizer_state, full_weights, load_full_state, place
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


def make_accelerator(config: TrainConfig, run_dir: Path, sitting_out: bool = False) -> Accelerator:
    """An Accelerator whose ``batch_size`` is global (split between processes). With ``sitting_out`` (a parameter
    group steps only every few steps, e.g. DMD2's generator, and its objective then leaves it out of the loss) DDP
    looks for parameters a step left without a gradient instead of waiting for them."""
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU.")
    # Accelerate keeps one global state per process; a run (e.g. the teacher in bf16, then a
    # student in fp32) gets its own settings, while the process group (PartialState) stays.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        # Without a GPU, say so: Accelerate then runs several launched processes over gloo.
        cpu=not torch.cuda.is_available(),
        mixed_precision=precision,
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with="tensorboard" if config.tensorboard else None,
        project_dir=str(run_dir),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)] if sitting_out else None,
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise ConfigError(
            f"{launched} processes were launched (WORLD_SIZE) but Accelerate's process group has "
            f"{accelerator.num_processes}: something created accelerate's PartialState before the launcher's "
            "environment was read. Create no Accelerator/PartialState before distill's engine, or create it "
            "after the launcher (torchrun / accelerate launch) has set the environment."
        )
    return accelerator


def make_optimizer(params, settings: GroupConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with momentum for one parameter group, as ``settings`` say."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    extra = {} if settings.betas is None else {"betas": settings.betas}
    return cls(params, lr=settings.lr, weight_decay=settings.weight_decay, **extra)


def parameter_groups(objective: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The objective's named parameter groups: its ``parameter_groups()`` if it declares them,
    else one group ``"model"`` of every trainable parameter."""
    declared = objective.parameter_groups() if hasattr(objective, "parameter_groups") else None
    groups = {"model": [p for p in objective.parameters() if p.requires_grad]} if declared is None else {
        name: [p for p in params if p.requires_grad] for name, params in declared.items()}
    seen: set[int] = set()
    for name, params in groups.items():
        if not params:
            raise ConfigError(f"parameter group {name!r} of {type(objective).__name__} has no trainable parameters.")
        if seen & {id(p) for p in params}:
            raise ConfigError(f"parameter group {name!r} of {type(objective).__name__} shares parameters with another group.")
        seen |= {id(p) for p in params}
    return groups


def decay_step(config: TrainConfig, total: int, per_epoch: int = 1) -> int:
    """The optimizer step after which a ``"step"`` schedule multiplies the rate by ``decay``."""
    return int(config.epochs * config.decay_at) * per_epoch if config.epochs else int(total * config.decay_at)


def schedule_factor(config: TrainConfig, step: int, total: int, per_epoch: int = 1) -> float:
    """The multiple of the base learning rate at optimizer step ``step`` of ``total``: linear warm-up, then
    constant, cosine or linear decay to zero, or one ``decay`` at ``decay_at`` of the budget (``"step"``,
    counted in whole epochs of ``per_epoch`` optimizer steps when the budget is epochs)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "step":
        cut = decay_step(config, total, per_epoch)
        return config.decay if 0 < cut <= step else 1.0
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "linear":
        return max(0.0, 1 - progress)
    return 1.0


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total: int, per_epoch: int = 1):
    """``optimizer``'s rate following :func:`schedule_factor` over ``total`` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule_factor(config, step, total, per_epoch))


def _trained(key: str) -> bool:
    """Whether a weight is one a run changes; a Distiller's frozen teacher's is not."""
    return ".teacher." not in f".{key}"


def _trainable_weights(objective: nn.Module) -> dict[str, torch.Tensor]:
    """Weights a run changes; a Distiller's frozen teacher is left out."""
    return {k: v for k, v in objective.state_dict().items() if _trained(k)}


def _student_state(objective: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                   sharded: bool) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """The weights and optimizer states a checkpoint holds: whole, the teacher left out."""
    if sharded:
        return full_weights(objective, _trained), {k: full_optimizer_state(objective, o) for k, o in optimizers.items()}
    return _trainable_weights(objective), {k: o.state_dict() for k, o in optimizers.items()}


def _step_schedules(schedulers: dict, skipping: bool) -> None:
    """One step of every schedule; a group that skipped this optimizer step still follows its schedule."""
    if not skipping:
        for scheduler in schedulers.values():
            scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
        for scheduler in schedulers.values():
            scheduler.step()


def _plain_optimizers(accelerator: Accelerator) -> bool:
    """Whether the optimizers can stay unwrapped: no fp16 loss scaler, and a process group (none, CPU or
    GPU data parallel) whose gradients DDP synchronises in ``backward`` itself. Accelerate's optimizer
    wrapper then only repeats what the loop does (it steps on synchronised micro-steps) and costs about
    0.3 ms a step in package look-ups on a CPU; everything else — devices, DDP, autocast, sharded data,
    gradient sync — stays Accelerate's."""
    return accelerator.scaler is None and accelerator.distributed_type in (
        DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


def _load_trainable(objective: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load a checkpoint's weights; every key it lacks must be a frozen teacher's."""
    missing, unexpected = objective.load_state_dict(weights, strict=False)
    missing = [k for k in missing if ".teacher." not in f".{k}"]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {source} does not fit this objective: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}. Resume with the same recipe, or start a new run folder.")


def _check_finite(values: dict[str, torch.Tensor], step: int, last: Path | None) -> None:
    loss = values["loss"]
    if not math.isfinite(loss.item() if loss.numel() == 1 else float(loss.sum())):
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
    """Optimise ``objective`` (``forward(batch) -> {"loss": ..}``) on ``train_set`` for ``config``'s budget.

    Batches are mappings of named tensors (:mod:`distill.engine.batches`); a dataset of
    ``(x, y)`` pairs gives ``{"x", "y"}``. The objective may declare
    ``parameter_groups() -> {name: params}``, each with its own optimizer, learning rate,
    clipping and update rate (``config.groups``), and ``after_optimizer_step(step)``, called
    once per optimizer step (EMA targets are updated there). Checkpoints go to
    ``run_dir/checkpoints``; with ``resume`` the newest one is restored (weights, optimizers,
    schedules, RNG, data position) and the run goes on exactly as if it had never stopped.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.drop_last and len(train_set) < config.batch_size:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(train_set)} training samples; lower it.")
    groups = parameter_groups(objective)
    unknown = sorted(set(config.groups) - set(groups))
    if unknown:
        raise ConfigError(f"train.groups names {unknown}, but {type(objective).__name__} has the parameter groups "
                          f"{sorted(groups)}; use those names.")
    settings = {name: config.group(name) for name in groups}
    skipping = any(s.every > 1 for s in settings.values())
    accelerator = make_accelerator(config, run_dir, sitting_out=skipping)
    if config.batch_size % accelerator.num_processes:
        raise ConfigError(f"batch_size {config.batch_size} must divide evenly between {accelerator.num_processes} processes.")
    set_seed(config.seed)
    sampler = EpochShuffleSampler(len(train_set), config.seed)
    # Its own generator: starting an iterator must not draw from the global RNG (exact resume).
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=config.drop_last,
                        collate_fn=collate_batches, generator=torch.Generator().manual_seed(config.seed))
    total = config.total_steps(len(loader))
    check_fits(objective, groups, settings, config, accelerator.num_processes, accelerator.device)
    # A sharded student's parameters are new (DTensor) objects: its optimizers take those.
    sharded = place(objective, config, accelerator.device, accelerator.num_processes)
    if sharded:
        groups = parameter_groups(objective)
    # state_dict() of a module with FSDP parts (a sharded teacher) is a collective: every process calls it
    gathering = accelerator.num_processes > 1 and (sharded or config.teacher_placement == "shard")
    optimizers = {name: make_optimizer(params, settings[name]) for name, params in groups.items()}
    steps_per_epoch = max(1, len(loader) // config.grad_accum)
    schedulers = {name: make_schedule(opt, config, total, steps_per_epoch) for name, opt in optimizers.items()}
    after_step = getattr(objective, "after_optimizer_step", None)
    restart_at = decay_step(config, total, steps_per_epoch) if config.schedule == "step" and config.restart_at_decay \
        else None
    plain = _plain_optimizers(accelerator)
    # A sharded student is not Accelerate's to wrap (it would wrap it in DDP): it keeps only the loader and
    # autocast, applied around its forward below.
    models = [] if sharded else [objective]
    prepared = accelerator.prepare(*models, loader, *([] if plain else optimizers.values()))
    prepared = prepared if isinstance(prepared, tuple) else (prepared,)  # one object comes back bare
    objective = prepared[0] if models else objective
    loader, *prepared = prepared[len(models):]
    forward_context = accelerator.autocast if sharded else nullcontext
    # per-sample random draws in the objective come out as one process with the whole batch would draw them
    split = batch_split(accelerator.process_index, accelerator.num_processes)
    if not plain:
        optimizers = dict(zip(optimizers, prepared))
    check_every_step = accelerator.device.type == "cpu"  # elsewhere a check would sync the device each step
    # Accelerate's accumulate() only matters when it has something to skip or synchronise.
    accumulating = config.grad_accum > 1 or accelerator.num_processes > 1
    scheduled = config.schedule != "constant" or config.warmup_steps > 0  # a constant rate needs no stepping
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
        if sorted(ckpt.state.get("optimizers", {})) != sorted(optimizers):
            raise CheckpointError(f"checkpoint {last_ckpt} holds the optimizer groups "
                                  f"{sorted(ckpt.state.get('optimizers', {}))}, this objective {sorted(optimizers)}.")
        if sharded:
            load_full_state(objective, ckpt.weights,
                            {name: (opt, ckpt.state["optimizers"][name]) for name, opt in optimizers.items()})
        else:
            _load_trainable(unwrapped, ckpt.weights, last_ckpt)
            for name in optimizers:
                optimizers[name].load_state_dict(ckpt.state["optimizers"][name])
        for name in optimizers:
            schedulers[name].load_state_dict(ckpt.state["schedulers"][name])
        set_rng_state(ckpt.state["rng"])
        step, micro = ckpt.step, ckpt.step * config.grad_accum
        if log is not None:
            log.truncate_after(step)

    def checkpoint() -> Path | None:
        nonlocal last_ckpt
        accelerator.wait_for_everyone()
        if gathering or accelerator.is_main_process:
            weights, optimizer_states = _student_state(accelerator.unwrap_model(objective), optimizers, sharded)
        if accelerator.is_main_process:
            state = {"optimizers": optimizer_states,
                     "schedulers": {k: s.state_dict() for k, s in schedulers.items()}, "rng": rng_state()}
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
            for item in batches:
                batch = as_batch(item)
                with accelerator.accumulate(objective) if accumulating else nullcontext():
                    with forward_context(), split:
                        values = objective(batch)
                    if check_every_step:
                        _check_finite(values, step + 1, last_ckpt)
                    if not plain:
                        accelerator.backward(values["loss"])
                    elif config.grad_accum > 1:
                        (values["loss"] / config.grad_accum).backward()
                    else:
                        values["loss"].backward()
                    if accelerator.sync_gradients:
                        for name, optimizer in optimizers.items():
                            if settings[name].max_grad_norm:
                                accelerator.clip_grad_norm_(groups[name], settings[name].max_grad_norm)
                            if (step + 1) % settings[name].every == 0:
                                optimizer.step()
                            optimizer.zero_grad(set_to_none=True)
                micro += 1
                samples_seen += batch_size_of(batch) * accelerator.num_processes
                running_n += 1
                for key, value in values.items():  # summed on the device, read at log steps only
                    value = value.detach()
                    running[key] = running.get(key, 0.0) + (value if value.dtype == torch.float32 else value.float())
                if micro % config.grad_accum:
                    continue
                if scheduled:
                    _step_schedules(schedulers, skipping)
                step += 1
                if restart_at is not None and step == restart_at:
                    for optimizer in optimizers.values():
                        getattr(optimizer, "optimizer", optimizer).state.clear()  # momentum starts afresh
                if after_step is not None:
                    after_step(step)
                row = None
                if step % config.log_every == 0 or step == total:
                    if accelerator.num_processes > 1:  # every process logs the mean over all of them
                        running = {k: accelerator.reduce(v.reshape(1), reduction="mean")[0] for k, v in running.items()}
                    means = {f"train_{k}": float(v) / running_n for k, v in running.items()}
                    if not check_every_step and not math.isfinite(means["train_loss"]):
                        _check_finite({"loss": torch.tensor(means["train_loss"])}, step, last_ckpt)
                    lrs = {"lr" if len(schedulers) == 1 else f"lr_{k}": s.get_last_lr()[0] for k, s in schedulers.items()}
                    row = {"step": step, **means, **lrs}
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
