"""What ``distill tune`` searches for a classification recipe: the methods and their few knobs, as one table.

Each method is the recipe's ``distill`` section it sets and the knobs it searches; each knob is a recipe
field (dotted, as ``--set`` writes it), a range, and the method's published setting, which the search
tries first. Adding a method or a knob is one entry here. A recipe narrows the table with its optional
``search:`` section (:class:`distill.tasks.classification.recipe.SearchSpec`). This module imports no
search library: the recipe validates ``search:`` against it when it loads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from distill.experiment.recipe import set_path

#: the learning rate is searched within the recipe's ``train.lr`` divided and multiplied by this (log scale)
LR_FACTOR = 5.0


@dataclass(frozen=True)
class Knob:
    """One searched number: the recipe field it sets, its range, log scale or not, and the method's own
    setting (tried first)."""

    name: str
    field: str
    low: float
    high: float
    default: float
    log: bool = False


@dataclass(frozen=True)
class SearchMethod:
    """A method the search tries: the fields of the recipe's ``distill`` section it sets, and its knobs."""

    name: str
    distill: dict
    knobs: tuple[Knob, ...]

    @property
    def augment(self) -> str:
        """The augmentation its student trains with (its scratch baseline trains with the same)."""
        return self.distill.get("augment", "none")


def _logits(loss: str, **options: float) -> list[dict]:
    """One pair matching student and teacher logits with ``loss``."""
    return [{"student": "output", "teacher": "output", "loss": loss, "options": options}]


def _temperature(default: float) -> Knob:
    return Knob("temperature", "distill.pairs.0.options.temperature", 1.0, 8.0, default, log=True)


#: the share of the soft term in KD-style losses (the rest is cross-entropy on labels)
_ALPHA = Knob("alpha", "distill.pairs.0.options.alpha", 0.1, 1.0, 0.9)

#: every method the search knows, in the order their published settings are tried: the default of a recipe
#: without a distill section (distill.tasks.classification.defaults) first
METHODS: dict[str, SearchMethod] = {method.name: method for method in (
    # function matching (Beyer et al. 2022): KD at T = 1 on mixed-up inputs that teacher and student both see
    SearchMethod("function_matching",
                 {"pairs": _logits("kd", temperature=1.0, alpha=1.0), "task_weight": 0.0, "augment": "mixup",
                  "teacher_signal": "live"}, ()),
    # KD (Hinton et al. 2015): alpha · T²·KL(teacher_T ‖ student_T) + (1 − alpha) · CE
    SearchMethod("kd", {"pairs": _logits("kd"), "task_weight": 0.0, "augment": "none"},
                 (_temperature(4.0), _ALPHA)),
    # DIST (Huang et al. 2022): CE + weight · (inter- and intra-class correlation losses)
    SearchMethod("dist", {"pairs": _logits("dist"), "task_weight": 1.0, "augment": "none"},
                 (_temperature(4.0), Knob("weight", "distill.pairs.0.weight", 0.25, 8.0, 1.0, log=True))),
    # DKD (Zhao et al. 2022): CE + target-class KL + beta · non-target KL (beta 8 on CIFAR-100, 0.5 on ImageNet)
    SearchMethod("dkd", {"pairs": _logits("dkd"), "task_weight": 1.0, "augment": "none"},
                 (_temperature(4.0), Knob("beta", "distill.pairs.0.options.beta", 0.5, 8.0, 8.0, log=True))),
    # LS-KD (Sun et al. 2024): KD on z-scored logits
    SearchMethod("lskd", {"pairs": _logits("lskd"), "task_weight": 0.0, "augment": "none"},
                 (_temperature(2.0), _ALPHA)),
)}


@dataclass(frozen=True)
class Space:
    """The methods searched (their knob ranges as the recipe set them) and the learning-rate range."""

    methods: tuple[SearchMethod, ...]
    lr: tuple[float, float]
    lr_default: float

    @property
    def augments(self) -> list[str]:
        """Every augmentation a searched student trains with, ``none`` first: one scratch baseline each."""
        return list(dict.fromkeys(["none", *(method.augment for method in self.methods)]))

    def defaults(self, method: SearchMethod) -> dict[str, float]:
        """The parameters of ``method`` at its published setting and the recipe's learning rate."""
        return {"method": method.name, "lr": self.lr_default,
                **{param_name(method, knob): knob.default for knob in method.knobs}}


def param_name(method: SearchMethod, knob: Knob) -> str:
    """The name a knob's value has among a trial's parameters (``kd.temperature``)."""
    return f"{method.name}.{knob.name}"


def knob_names(methods: list[str] | None = None) -> list[str]:
    """The names of the knobs of ``methods`` (every method when None)."""
    chosen = [METHODS[name] for name in methods or METHODS]
    return list(dict.fromkeys(knob.name for method in chosen for knob in method.knobs))


def build_space(lr: float, methods: list[str] | None = None, lr_range: tuple[float, float] | None = None,
                ranges: dict[str, tuple[float, float]] | None = None) -> Space:
    """The space of ``methods`` (all when None) around the recipe's learning rate ``lr``; ``ranges`` replace
    knob ranges by knob name, ``lr_range`` the learning rate's. A default outside its new range is moved
    to the range's nearest end."""
    ranges = ranges or {}
    chosen = tuple(replace(METHODS[name], knobs=tuple(_ranged(knob, ranges.get(knob.name))
                                                      for knob in METHODS[name].knobs))
                   for name in methods or METHODS)
    low, high = lr_range or (lr / LR_FACTOR, lr * LR_FACTOR)
    return Space(chosen, (low, high), _clip(lr, low, high))


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _ranged(knob: Knob, low_high: tuple[float, float] | None) -> Knob:
    """``knob`` searched within ``low_high`` instead of its own range (its default moved inside)."""
    if low_high is None:
        return knob
    low, high = low_high
    return replace(knob, low=low, high=high, default=_clip(knob.default, low, high))


def setting_tree(base: dict, params: dict[str, float]) -> dict:
    """The recipe mapping ``base`` with the trial's setting ``params`` (``method``, ``lr`` and the method's
    knobs by :func:`param_name`): the method's ``distill`` fields replace the recipe's, the knobs and
    ``train.lr`` are set. The recipe's other ``distill`` fields (``use_transfer``, ``mixup_alpha``) stay."""
    method = METHODS[params["method"]]
    tree = copy.deepcopy(base)
    tree["distill"] = {**tree.get("distill", {}), **copy.deepcopy(method.distill)}
    set_path(tree, "train.lr", params["lr"])
    for knob in method.knobs:
        set_path(tree, knob.field, params[param_name(method, knob)])
    return tree
