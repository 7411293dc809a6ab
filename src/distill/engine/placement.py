"""Where a run's frozen teacher and its student live across processes (``train.teacher_placement``,
``train.distributed``), and the refusal of a run that would not fit ``train.device_memory_gib``.

``replicate``: every process holds the whole teacher. ``shard``: FSDP2 ``fully_shard`` of the frozen teacher
over the processes (Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel"):
each holds 1/N of its weights and gathers one block at a time for its forward. It is frozen and put in eval
mode before it is wrapped, keeps the dtype it was built in (cast it first, e.g. to bf16, to halve it; bf16
mixed precision autocasts its compute, as for a replicated teacher), and is never handed to an optimizer.
``cache``: no teacher in the training processes; the family serves its outputs from the signals layer.
A student under ``distributed.strategy: fsdp`` is sharded the same way. One process shards nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from distill.engine.config import GroupConfig, TrainConfig
from distill.errors import ConfigError

GIB = 2**30
#: the families that can serve a teacher's outputs from a cache instead of running it, and their keys
CACHE_FAMILIES = "classification (distill.teacher_signal: cache) and language (signals.source: cache)"
#: the families whose teacher is called through its forward pass, which FSDP2 gathers, so it can be sharded
SHARD_FAMILIES = "classification and language"


def placement_refusal(config: TrainConfig, family: str, reason: str) -> str | None:
    """Why ``family`` cannot honour ``config.teacher_placement`` (None for ``replicate``, which every family can)."""
    if config.teacher_placement == "replicate":
        return None
    return (f"train.teacher_placement {config.teacher_placement!r} is not available in the {family} family: {reason}. "
            f"Use replicate (the default); a sharded teacher: {SHARD_FAMILIES}; a cached one: {CACHE_FAMILIES}")


def frozen_teachers(objective: nn.Module) -> list[tuple[str, nn.Module]]:
    """The objective's frozen teachers: the outermost submodules named ``teacher`` with no trainable
    parameter (the engine already leaves ``teacher.*`` out of checkpoints by that name)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in objective.named_modules():
        if name.rsplit(".", 1)[-1] != "teacher" or any(name.startswith(f"{outer}.") for outer, _ in found):
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            found.append((name, module))
    return found


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _optimizer_states(settings: GroupConfig) -> int:
    """Tensors the size of a parameter that the group's optimizer keeps: Adam's two moments, SGD's momentum."""
    if settings.optimizer == "sgd":
        return 1 if settings.momentum else 0
    return 2


def device_gib(device: torch.device) -> float | None:
    """The memory of a CUDA ``device`` in GiB (None elsewhere: a CPU's is shared with everything else)."""
    return torch.cuda.get_device_properties(device).total_memory / GIB if device.type == "cuda" else None


def check_fits(objective: nn.Module, groups: dict[str, list[nn.Parameter]], settings: dict[str, GroupConfig],
               config: TrainConfig, processes: int, device: torch.device) -> None:
    """Refuse a run whose resident tensors exceed ``config.device_memory_gib`` per device (by default a GPU's
    own memory; no limit on a CPU), before training, naming the placement that would fit. Counted: the
    teacher's weights and buffers (1/N sharded, none cached), every other weight and buffer, and each trainable
    parameter's gradient and optimizer state (1/N under ``fsdp``); not counted: activations, so this is a
    lower bound of what the run needs."""
    limit_gib = config.device_memory_gib or device_gib(device)
    if limit_gib is None:
        return
    teachers = [module for _, module in frozen_teachers(objective)]
    teacher_ids = {id(t) for module in teachers for t in (*module.parameters(), *module.buffers())}
    teacher = _bytes(t for module in teachers for t in (*module.parameters(), *module.buffers()))
    rest = _bytes(t for t in (*objective.parameters(), *objective.buffers()) if id(t) not in teacher_ids)
    rest += sum(_bytes(params) * (1 + _optimizer_states(settings[name])) for name, params in groups.items())
    teacher_share = teacher / processes if config.teacher_placement == "shard" and processes > 1 else teacher
    student_share = rest / processes if config.distributed.strategy == "fsdp" and processes > 1 else rest
    limit = limit_gib * GIB
    if teacher_share + student_share <= limit:
        return
    sizes = (f"at least {(teacher_share + student_share) / GIB:.3g} GiB per device: the teacher "
             f"{teacher_share / GIB:.3g} GiB ({config.teacher_placement}), the student's weights, gradients and "
             f"optimizer state {student_share / GIB:.3g} GiB, activations not counted")
    if teacher_share > 0 and config.teacher_placement == "replicate":
        raise ConfigError(
            f"this run needs {sizes}, more than the device's {limit_gib:.3g} GiB (train.device_memory_gib). Set "
            f"train.teacher_placement: shard (the teacher split over the processes: {teacher / GIB:.3g} GiB ÷ the "
            f"process count) or cache (no teacher on the training devices; {CACHE_FAMILIES}).")
    raise ConfigError(
        f"this run needs {sizes}, more than the device's {limit_gib:.3g} GiB (train.device_memory_gib). Shard the student "
        "(train.distributed.strategy: fsdp), launch more processes, or train a smaller student.")


def _blocks(module: nn.Module, skip: set[int]) -> list[nn.Module]:
    """The outermost items of ``module``'s ``ModuleList`` / ``Sequential`` containers that hold parameters (a
    transformer's layers, a CNN's stages): FSDP's units, each gathered on its own."""
    blocks: list[nn.Module] = []
    for child in module.children():
        if id(child) in skip:
            continue
        if isinstance(child, (nn.ModuleList, nn.Sequential)):
            blocks += [item for item in child if id(item) not in skip and any(True for _ in item.parameters())]
        else:
            blocks += _blocks(child, skip)
    return blocks


def _mesh(device: torch.device, processes: int):
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (processes,))


def _reshard(teacher: nn.Module, args, output) -> None:
    teacher.reshard()


def shard_teacher(teacher: nn.Module, device: torch.device, processes: int) -> nn.Module:
    """``teacher`` frozen, in eval mode, on ``device``, in the dtype it was built in, and (over several
    processes) FSDP2-sharded block by block, then as a whole. FSDP2 keeps a root module's weights gathered
    after its forward for the backward that follows; a frozen teacher has none, so it is resharded at once."""
    from torch.distributed.fsdp import fully_shard

    teacher.eval().requires_grad_(False).to(device)
    if processes > 1:
        mesh = _mesh(device, processes)
        for block in _blocks(teacher, set()):
            fully_shard(block, mesh=mesh)
        fully_shard(teacher, mesh=mesh)
        teacher.register_forward_hook(_reshard)
    return teacher


def shard_student(objective: nn.Module, device: torch.device, processes: int) -> nn.Module:
    """``objective`` on ``device`` with everything but a replicated teacher FSDP2-sharded over ``processes``: its
    ``model`` (what evaluators call on its own) and that model's blocks each a unit, the rest with the root."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    objective.to(device)
    mesh = _mesh(device, processes)
    teachers = [module for _, module in frozen_teachers(objective)]
    model = getattr(objective, "model", None)
    units = _blocks(model, {id(t) for t in teachers}) + [model] if isinstance(model, nn.Module) else []
    for unit in units:
        fully_shard(unit, mesh=mesh)
    ignored = {p for t in teachers if not isinstance(t, FSDPModule) for p in t.parameters()}
    fully_shard(objective, mesh=mesh, ignored_params=ignored or None)
    return objective


def ignore_in_ddp(objective: nn.Module, names: list[str]) -> None:
    """Keep DDP from broadcasting the weights under ``names`` (sharded teachers: each process holds its own part)."""
    from torch.nn.parallel import DistributedDataParallel

    prefixes = tuple(f"{name}." for name in names)
    keys = [k for k, _ in (*objective.named_parameters(), *objective.named_buffers()) if k.startswith(prefixes)]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(objective, keys)


def place(objective: nn.Module, config: TrainConfig, device: torch.device, processes: int) -> bool:
    """Lay ``objective`` out as ``config`` says; whether its student is sharded (then it must not be handed to
    ``accelerator.prepare``, which would wrap it in DDP)."""
    teachers = frozen_teachers(objective)
    if config.teacher_placement == "cache" and teachers:
        raise ConfigError(
            f"train.teacher_placement 'cache' needs a family that serves its teacher's outputs from a cache, but "
            f"{type(objective).__name__} runs its teacher live ({', '.join(n for n, _ in teachers)}). Caches: "
            f"{CACHE_FAMILIES}; elsewhere use replicate or shard.")
    if config.teacher_placement == "shard":
        for _, teacher in teachers:
            shard_teacher(teacher, device, processes)
        if processes > 1 and config.distributed.strategy == "ddp":
            ignore_in_ddp(objective, [name for name, _ in teachers])
    if config.distributed.strategy == "fsdp" and processes > 1:
        shard_student(objective, device, processes)
        return True
    return False


def full_weights(objective: nn.Module, keep) -> dict[str, torch.Tensor]:
    """The weights ``keep(name)`` selects, whole and on the CPU: a sharded tensor is gathered (a collective every
    process must call; the teacher, left out, is never gathered)."""
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu()
            for k, v in objective.state_dict().items() if keep(k)}


def full_optimizer_state(objective: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A sharded student's optimizer state, whole and keyed by parameter names (a collective; complete on the
    main process)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(objective, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(objective: nn.Module, weights: dict[str, torch.Tensor],
                    optimizers: dict[str, tuple[torch.optim.Optimizer, dict]]) -> None:
    """Load whole weights and optimizer states (as :func:`full_weights` / :func:`full_optimizer_state` wrote them)
    into a sharded student: every process reads the same file and keeps its own part (torch shards the given
    dictionaries in place)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(objective, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    for optimizer, state in optimizers.values():
        set_optimizer_state_dict(objective, optimizer, state, options=StateDictOptions(full_state_dict=True))
