"""The Distiller: student + frozen teacher + a map of tapped tensor pairs to losses.

In the spirit of NVIDIA ModelOpt's ``DistillationModel``: the user's loop stays
theirs. ``distiller(x)`` runs the teacher (no autograd) and the student and returns
the student's output; ``distiller.compute_losses(target)`` returns the named losses
and their weighted ``"total"``; ``distiller.export()`` hands back the bare student.
Like ModelOpt's wrapper, ``distiller(*args, **kwargs)`` passes whatever the models take
(input ids, attention masks), and ``compute_losses(mask=...)`` leaves padded tokens out.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import nn

from distill.adapters import Layout, build_adapters, describe_projector, infer_layout
from distill.errors import ConfigError, DistillError
from distill.losses import LOSSES, DistillLoss
from distill.taps import TapRecorder, TapSpec, parse_tap, resolve_module


@dataclass
class Match:
    """How one (student tap, teacher tap) pair is scored: a loss, its weight, a display name.

    ``warmup``: the weight ramps linearly from 0 to ``weight`` over this many training
    forward passes (e.g. DKD's warm-up, Zhao et al. 2022). ``project``: always put a
    trainable projector onto the teacher's shape in front of the loss, even a logit loss
    — this is how a student stage becomes an exit classifier (BYOT, OFA).
    """

    loss: DistillLoss | str
    weight: float = 1.0
    warmup: int = 0
    project: bool = False
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    student_layout: Layout = "auto"
    teacher_layout: Layout = "auto"

    def __post_init__(self) -> None:
        layouts = get_args(Layout)
        for side in ("student_layout", "teacher_layout"):
            if getattr(self, side) not in layouts:
                raise ConfigError(
                    f"Match {side} must be one of {', '.join(map(repr, layouts))}, got {getattr(self, side)!r}; "
                    "'tokens' means (B, N, D) sequences, 'channels_first' (B, C, L) maps, 'auto' guesses "
                    "from the tapped module."
                )

    def build_loss(self) -> DistillLoss:
        """The loss instance: built from the registry when given by name."""
        if isinstance(self.loss, str):
            return LOSSES.build(self.loss, **self.options)
        if isinstance(self.loss, DistillLoss):
            return self.loss
        raise DistillError(
            f"a match's loss must be a registered name ({', '.join(LOSSES.names())}) or a DistillLoss, "
            f"got {type(self.loss).__name__}."
        )


PairsArg = Mapping[tuple[str, str], "Match | DistillLoss | str | tuple[DistillLoss | str, float]"]


def _as_match(value: Any) -> Match:
    if isinstance(value, Match):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (int, float)):
        return Match(loss=value[0], weight=float(value[1]))
    return Match(loss=value)


def _loss_name(match: Match, loss: DistillLoss) -> str:
    if match.name:
        return match.name
    if isinstance(match.loss, str):
        return match.loss
    return type(loss).__name__.removesuffix("Loss").lower()


Taps = TapSpec | tuple[TapSpec, ...]


def _parse_taps(tap: str | tuple | list) -> Taps:
    """One tap, or a tuple of taps for a multi-level loss (e.g. ReviewKD)."""
    if isinstance(tap, (tuple, list)):
        return tuple(parse_tap(t) for t in tap)
    return parse_tap(tap)


def _each(taps: Taps) -> tuple[TapSpec, ...]:
    return taps if isinstance(taps, tuple) else (taps,)


def _label(taps: Taps) -> str:
    return "+".join(str(t) for t in _each(taps))


class _Pair(nn.Module):
    """One scored pair: the taps, the loss, its weight and (once shapes are known) adapters."""

    def __init__(self, student_tap: Taps, teacher_tap: Taps, match: Match) -> None:
        super().__init__()
        self.student_tap, self.teacher_tap, self.match = student_tap, teacher_tap, match
        self.loss = match.build_loss()
        self.name = _loss_name(match, self.loss)
        self.multi_level = self.loss.requires == "multi_level"
        if self.multi_level != (isinstance(student_tap, tuple) and isinstance(teacher_tap, tuple)):
            raise DistillError(
                f"loss {self.name!r} on ({_label(student_tap)} → {_label(teacher_tap)}): multi-level losses take a "
                "list of taps on both sides, every other loss one tap per side."
            )
        self.student_adapter: nn.Module | None = None
        self.teacher_adapter: nn.Module | None = None

    def build_adapters(self, student: torch.Tensor, teacher: torch.Tensor, layouts: tuple[str, str]) -> None:
        """Projectors for the shapes seen in one forward pass (none for multi-level losses)."""
        if self.multi_level:  # the loss fuses and projects the levels itself
            self.student_adapter, self.teacher_adapter = nn.Identity(), nn.Identity()
            return
        label = f"pair ({self.student_tap} → {self.teacher_tap}, loss {self.name!r})"
        s_adapter, t_adapter = build_adapters(
            student.shape, teacher.shape, self.loss.requires, label, *layouts,
            projector=self.loss.projector, project=self.match.project,
        )
        self.student_adapter = s_adapter.to(student.device)
        self.teacher_adapter = t_adapter.to(teacher.device)

    def needs_shapes(self) -> bool:
        """Whether this pair certainly creates parameters from the tapped shapes (a forced projector, or loss
        heads sized from one batch), so the Distiller needs ``example_input`` before the optimizer exists."""
        return self.match.project or self.loss.pending_setup()

    def trainable(self) -> bool:
        """Whether the adapters built from the shapes (or the loss's heads) create parameters."""
        return any(True for _ in self.student_adapter.parameters()) or self.loss.pending_setup()


def _missing_example_input(names: list[str]) -> DistillError:
    return DistillError(
        f"pairs {names} need a trainable projector (or loss heads sized from one batch), which must exist before "
        "the optimizer is built: pass example_input=<one batch of inputs> to Distiller(...)."
    )


#: a projector with at least this share of the student's parameter count is named in a warning when built
LARGE_PROJECTOR = 1.0


def _as_call(value: Any) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of a model call from one value.

    A tuple is the positional arguments, a dict the keyword arguments, anything else
    (a tensor) the one positional argument.
    """
    if isinstance(value, tuple):
        return value, {}
    if isinstance(value, Mapping):
        return (), dict(value)
    return (value,), {}


def _check_kwargs_map(mapping: Mapping[str, str | None] | None) -> dict[str, str | None]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items()
    ):
        raise DistillError(
            "teacher_kwargs_map must map the student's keyword names to the teacher's (or to None to leave "
            f"that keyword out for the teacher), e.g. {{'attention_mask': 'mask'}}; got {mapping!r}."
        )
    return dict(mapping)


def _inference_dtype(teacher: nn.Module) -> torch.dtype | None:
    """The dtype of the teacher's floating-point weights: the dtype it runs in (None: it has none)."""
    return next((p.dtype for p in teacher.parameters() if p.is_floating_point()), None)


def _in_dtype(call: tuple[tuple, dict], dtype: torch.dtype | None) -> tuple[tuple, dict]:
    """A model call's floating-point tensor arguments cast to ``dtype`` (token ids and masks are left as they are)."""
    def cast(value: Any) -> Any:
        return value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    args, kwargs = call
    if dtype is None:
        return args, kwargs
    return tuple(map(cast, args)), {k: cast(v) for k, v in kwargs.items()}


def _like(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """A teacher's tapped tensor in the dtype of the student tensor it is scored against."""
    if teacher.is_floating_point() and student.is_floating_point() and teacher.dtype != student.dtype:
        return teacher.to(student.dtype)
    return teacher


class Distiller(nn.Module):
    """Wrap ``student`` and ``teacher`` and score tapped tensor pairs with distillation losses.

    ``pairs`` maps ``(student_tap, teacher_tap)`` to a loss name, a ``DistillLoss``,
    ``(loss, weight)`` or a :class:`Match`. Taps are module paths (see
    :mod:`distill.taps`). ``task_loss(student_output, target)`` with ``task_weight``
    adds the ordinary supervised loss. Pass ``example_input`` when a pair needs a
    trainable projector, so it exists before the optimizer is created (a projector with
    as many parameters as the student, or more, is named in a warning), and
    ``example_teacher_input`` when the teacher sees a different view); each is one
    batch as :meth:`forward` takes it: a tensor, a tuple of positional arguments or a
    dict of keyword arguments. ``teacher_kwargs_map`` renames the keyword arguments of
    :meth:`forward` for the teacher (``{"attention_mask": "mask"}``; a name mapped to
    None is not passed to the teacher).

    ``teacher="self"`` is self-distillation (Zhang et al., ICCV 2019, "Be Your Own
    Teacher"): teacher taps are read from the student's own forward pass and detached,
    so deep layers teach shallow ones.

    The hooks on the models go with the Distiller: at :meth:`export`, when it is garbage-collected,
    and when a configuration error (a wrong key, shapes no projector can match) surfaces at the
    first :meth:`compute_losses`; it must then be rebuilt.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | Literal["self"] | None,
        pairs: PairsArg,
        *,
        task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        task_weight: float = 1.0,
        example_input: Any = None,
        example_teacher_input: Any = None,
        teacher_kwargs_map: Mapping[str, str | None] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(student, nn.Module):
            raise DistillError(f"student must be a torch.nn.Module, got {type(student).__name__}.")
        self.self_distill = isinstance(teacher, str) and teacher == "self"
        if self.self_distill:
            teacher = None
        elif teacher is not None and not isinstance(teacher, nn.Module):
            raise DistillError(f"teacher must be a torch.nn.Module, 'self' or None, got {teacher!r}.")
        if not isinstance(pairs, Mapping):
            raise DistillError(
                f"pairs must be a mapping {{(student_tap, teacher_tap): loss}}, e.g. {{('output', 'output'): 'kd'}}, "
                f"got {type(pairs).__name__}."
            )
        if not pairs and (task_loss is None or not task_weight):
            raise DistillError(
                "nothing to train: there are no pairs and no task loss (or task_weight=0), so there is no total "
                "loss. Add pairs such as {('output', 'output'): 'kd'}, or a task_loss with task_weight > 0."
            )
        self.student = student
        self.teacher = teacher
        self.teacher_kwargs_map = _check_kwargs_map(teacher_kwargs_map)
        self.task_loss, self.task_weight = task_loss, float(task_weight)
        self.pairs = nn.ModuleList(self._build_pairs(pairs))
        self._layouts = [
            ("channels_first", "channels_first") if p.multi_level else (
                infer_layout(resolve_module(student, p.student_tap.path, "student"), p.match.student_layout),
                infer_layout(resolve_module(self._teacher_or_fail(), p.teacher_tap.path, "teacher"), p.match.teacher_layout),
            )
            for p in self.pairs
        ]
        self._closed: str | None = None  # why forward() refuses: exported, or a configuration error
        self._adapters_ready = False
        self._teacher_output: Any = None
        #: training forward passes so far (drives warm-ups; saved in checkpoints so resume is exact)
        self.register_buffer("passes", torch.zeros((), dtype=torch.long))
        recorders: list[TapRecorder] = []
        try:  # a failure below must not leave hooks on the user's models
            recorders.append(TapRecorder(student, [t for p in self.pairs for t in _each(p.student_tap)], "student"))
            recorders.append(TapRecorder(self._teacher_or_fail() if len(self.pairs) else student,
                                         [t for p in self.pairs for t in _each(p.teacher_tap)], "teacher"))
            self.student_taps, self.teacher_taps = recorders
            if example_input is not None:
                self._build_adapters_from(example_input, example_teacher_input)
            elif any(p.needs_shapes() for p in self.pairs):
                raise _missing_example_input([p.name for p in self.pairs if p.needs_shapes()])
        except Exception:
            for recorder in recorders:
                recorder.remove()
            raise
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    def _teacher_or_fail(self) -> nn.Module:
        if self.self_distill:
            return self.student
        if self.teacher is None:
            raise DistillError("tap pairs need a teacher; pass teacher=... (or use no pairs, only task_loss).")
        return self.teacher

    def _build_pairs(self, pairs: PairsArg) -> list[_Pair]:
        built, seen = [], {}
        for key, value in pairs.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise DistillError(f"each key of pairs must be (student_tap, teacher_tap), got {key!r}.")
            pair = _Pair(_parse_taps(key[0]), _parse_taps(key[1]), _as_match(value))
            seen[pair.name] = seen.get(pair.name, 0) + 1
            if seen[pair.name] > 1:
                pair.name = f"{pair.name}/{_label(pair.student_tap)}"
            built.append(pair)
        return built

    def train(self, mode: bool = True) -> Distiller:
        """Set the student (and adapters) to ``mode``; the teacher always stays in eval mode."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(self, *args: Any, teacher_input: Any = None, **kwargs: Any) -> Any:
        """Run the teacher (without autograd) and ``student(*args, **kwargs)``; return the student's output.

        The teacher gets the same arguments, keywords renamed by ``teacher_kwargs_map``,
        unless ``teacher_input`` gives it its own (a different view, e.g. more sensor
        channels): a tensor is its one positional argument, a tuple its positional
        arguments, a dict its keyword arguments. Floating-point arguments are cast to the
        teacher's own dtype (a bf16 teacher gets bf16 inputs); its tapped tensors are cast
        back to the student's at :meth:`compute_losses`.
        """
        if self._closed:
            raise DistillError(f"this Distiller was {self._closed}; build a new one to keep distilling.")
        self.student_taps.clear()
        self.teacher_taps.clear()
        self._teacher_output = None
        if self.training:
            self.passes.add_(1)
        if self.teacher is not None and len(self.pairs):
            teacher_args, teacher_kwargs = _in_dtype(self._teacher_arguments(args, kwargs, teacher_input),
                                                     _inference_dtype(self.teacher))
            with torch.no_grad():
                self._teacher_output = self.teacher(*teacher_args, **teacher_kwargs)
        return self.student(*args, **kwargs)

    @property
    def teacher_output(self) -> Any:
        """The teacher's output in the latest forward pass (None when the teacher did not run), for a caller
        that also scores it outside the pairs — a live teacher's logits as token targets — without a second
        teacher pass."""
        return self._teacher_output

    def _teacher_arguments(self, args: tuple, kwargs: dict, teacher_input: Any) -> tuple[tuple, dict]:
        if teacher_input is not None:
            return _as_call(teacher_input)
        renamed: dict[str, Any] = {}
        for key, value in kwargs.items():
            name = self.teacher_kwargs_map.get(key, key)
            if name is None:
                continue
            if name in renamed:
                raise DistillError(
                    f"the teacher would get keyword argument {name!r} twice: teacher_kwargs_map renames another "
                    "keyword onto it; map one of them to None, or pass the teacher's arguments as teacher_input."
                )
            renamed[name] = value
        return args, renamed

    @torch.no_grad()
    def _build_adapters_from(self, example_input: Any, example_teacher_input: Any = None) -> None:
        """One dummy pass in eval mode: adapters from the seen shapes, lazy loss heads materialised."""
        was_training = self.training
        self.eval()
        try:
            args, kwargs = _as_call(example_input)
            self.forward(*args, teacher_input=example_teacher_input, **kwargs)
            self._make_adapters()
            self._name_large_projectors()
            for pair in self.pairs:  # e.g. CRD's embedding heads take their input sizes now
                if pair.loss.pending_setup():
                    pair.loss(*self._adapted(pair), None)
        finally:
            self.train(was_training)
            self.student_taps.clear()
            self.teacher_taps.clear()

    def _make_adapters(self) -> None:
        for pair, layouts in zip(self.pairs, self._layouts):
            pair.build_adapters(self._tensors(self.student_taps, pair.student_tap),
                                self._tensors(self.teacher_taps, pair.teacher_tap), layouts)
        self._adapters_ready = True

    def _name_large_projectors(self) -> None:
        """A one-line warning for each projector with at least ``LARGE_PROJECTOR`` of the student's parameter
        count: it is trained alongside, may learn the match in the student's stead, and is dropped at export."""
        student = sum(p.numel() for p in self.student.parameters())
        for pair in self.pairs:
            size = sum(p.numel() for p in pair.student_adapter.parameters())
            if size and size >= LARGE_PROJECTOR * student:
                warnings.warn(
                    f"pair ({_label(pair.student_tap)} → {_label(pair.teacher_tap)}, loss {pair.name!r}): inferred "
                    f"projector {describe_projector(pair.student_adapter)} has {size:,} trainable parameters "
                    f"({size / student:.1f}× the student's {student:,}); it trains with the student and is dropped "
                    "at export. Tap a teacher tensor nearer the student's shape for a smaller one.",
                    stacklevel=2,
                )

    @staticmethod
    def _tensors(recorder: TapRecorder, taps: Taps) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(taps, tuple):
            return [recorder.get(t) for t in taps]
        return recorder.get(taps)

    def compute_losses(
        self, target: torch.Tensor | None = None, output: Any = None, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Named (unweighted) losses of the latest forward pass and their weighted sum ``"total"``.

        ``output`` is the student's output, needed only for ``task_loss``. ``mask`` is a
        bool tensor over the leading positions of the tapped tensors (e.g. ``(B, L)`` for
        ``(B, L, V)`` token logits), false at padding; it is passed to every pair's loss,
        which must support it (``DistillLoss.supports_mask``). ``task_loss`` does not see
        it: give padded positions the label ``IGNORE_INDEX`` instead.
        """
        if mask is not None:
            self._check_masked_losses()
        if not self._adapters_ready and len(self.pairs):
            self._adapters_from_first_pass()
        losses: dict[str, torch.Tensor] = {}
        total = None
        masking = {} if mask is None else {"mask": mask}
        for pair in self.pairs:
            value = pair.loss(*self._adapted(pair), target, **masking)
            losses[pair.name] = value
            weight = pair.match.weight * self._ramp(pair.match.warmup)
            weighted = value if weight == 1.0 else value * weight
            total = weighted if total is None else total + weighted
        if self.task_loss is not None and self.task_weight:
            if output is None or target is None:
                raise DistillError("task_loss needs compute_losses(target=labels, output=student_output).")
            losses["task"] = self.task_loss(output, target)
            total = losses["task"] * self.task_weight if total is None else total + losses["task"] * self.task_weight
        losses["total"] = total
        return losses

    def _adapters_from_first_pass(self) -> None:
        """Adapters from the first pass's shapes (no ``example_input`` was given). A configuration error found
        here closes the Distiller, hooks removed; a call before any forward pass only raises."""
        ran = bool(self.student_taps.store or self.teacher_taps.store)
        try:
            self._make_adapters()
            trainable = [p.name for p in self.pairs if p.trainable()]
            if trainable:
                raise _missing_example_input(trainable)
        except DistillError:
            if ran:
                self._close("stopped by a configuration error")
            raise

    def _check_masked_losses(self) -> None:
        unmaskable = [f"{p.name!r} (loss {p.match.loss if isinstance(p.match.loss, str) else type(p.loss).__name__})"
                      for p in self.pairs if not p.loss.supports_mask]
        if unmaskable:
            maskable = [name for name in LOSSES.names() if LOSSES.get(name).supports_mask]
            raise DistillError(
                f"compute_losses(mask=...) was given, but the loss of {'pairs' if len(unmaskable) > 1 else 'pair'} "
                f"{', '.join(unmaskable)} cannot leave positions out. Losses that take a mask: "
                f"{', '.join(map(repr, maskable))}; switch to one of them, or drop the mask."
            )

    def _adapted(self, pair: _Pair) -> tuple:
        if pair.multi_level:
            student = self._tensors(self.student_taps, pair.student_tap)
            teacher = [_like(t.detach(), s) for t, s in zip(self._tensors(self.teacher_taps, pair.teacher_tap), student)]
            return student, teacher
        student = self.student_taps.get(pair.student_tap)
        teacher = pair.teacher_adapter(_like(self.teacher_taps.get(pair.teacher_tap).detach(), student))
        return pair.student_adapter(student), teacher

    def _ramp(self, warmup: int) -> float:
        return min(1.0, float(self.passes) / warmup) if warmup > 0 else 1.0

    def export(self) -> nn.Module:
        """Remove every hook and return the bare student for deployment."""
        self._close("exported")
        return self.student

    def _close(self, why: str) -> None:
        self.student_taps.remove()
        self.teacher_taps.remove()
        self._teacher_output = None
        self._closed = why
