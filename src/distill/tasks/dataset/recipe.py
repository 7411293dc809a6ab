"""Dataset-distillation recipes (``task: dataset``): a real training set, a method, an IPC, the evaluation protocol."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from distill.engine.config import StrictModel
from distill.experiment.recipe import check_registered

#: the real training sets a recipe can condense: MNIST 28×28 for benchmarks, sklearn's 8×8 digits for tests, and
#: the user's own images (``distill.data.files``: NumPy arrays, or an image folder with one sub-folder per class)
DATASETS = ("mnist", "digits", "arrays", "image_folder")
#: the architectures a recipe names, by the field's names, and the ``distill.models.MODELS`` entry each is built as
#: (the instance-norm networks of ``distill.models.dd``, not the batch-norm ``convnet`` / ``mlp`` of MODELS)
ARCHITECTURES = {"convnet": "convnet_dd", "mlp": "mlp_dd", "resnet": "resnet_dd"}


class DataSpec(StrictModel):
    """The real data: ``name`` (one of ``DATASETS``) and its loader's ``options`` (``train`` and ``test`` files or
    folders for ``arrays`` and ``image_folder``, as in classification recipes); ``limit_train`` keeps the first that
    many training images; ``standardize`` maps each channel to zero mean and unit variance over the training images
    (the test images with the same mean and std), the scale DSA and ``init: noise`` assume (MNIST is loaded so)."""

    name: Literal[DATASETS] = "mnist"
    options: dict[str, Any] = Field(default_factory=dict)
    limit_train: PositiveInt | None = None
    standardize: bool = False


class NetworkSpec(StrictModel):
    """The network family the method condenses with (and the evaluation's default): the field's ConvNet of
    ``depth`` blocks, ``width`` channels (128 in the papers; narrower on a CPU), instance norm, average pooling
    (``ARCHITECTURES``). ``tap``: the module path of its feature vector (distill.taps), what distribution
    matching compares and herding selects on."""

    name: Literal["convnet", "mlp", "resnet"] = "convnet"
    width: PositiveInt = 32
    depth: PositiveInt = 3
    tap: str = "features"


class ExpertSpec(StrictModel):
    """MTT's expert trajectories: ``count`` networks trained ``epochs`` epochs on the real data (SGD, ``lr``),
    parameters saved after every epoch; ``limit_train`` real images per expert epoch (None: all)."""

    count: PositiveInt = 5
    epochs: PositiveInt = 10
    lr: float = Field(0.01, gt=0)
    batch_size: PositiveInt = 256
    limit_train: PositiveInt | None = None


class MethodSpec(StrictModel):
    """``name``: dc, dsa, dm or mtt; ``ipc`` synthetic images per class started from ``init`` (real images or
    noise); ``iterations`` outer iterations; ``dsa``: Siamese augmentation while condensing (DC without it is
    the original DC); ``options``: the method's own (loops, learning rates; see ``distill list dataset-methods``)."""

    name: str = "dm"
    ipc: PositiveInt = 10
    init: Literal["real", "noise"] = "real"
    iterations: PositiveInt = 1000
    checkpoint_every: int = Field(100, ge=0)
    dsa: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    experts: ExpertSpec = Field(default_factory=ExpertSpec)

    @model_validator(mode="after")
    def _method_known(self) -> MethodSpec:
        from distill.tasks.dataset.methods import CONDENSERS

        check_registered(CONDENSERS, self.name, self.options, ipc=self.ipc)
        if "trajectories" in self.options:
            raise ValueError("method.options.trajectories: a recipe's experts are trained by distill (method.experts)")
        if self.name == "dsa" and not self.dsa:
            raise ValueError("method.name 'dsa' is gradient matching with Siamese augmentation; set method.dsa: true "
                             "or use method.name: dc")
        return self


class SoftLabelSpec(StrictModel):
    """Soft labels from a teacher (the full-data ConvNet) at ``temperature``: reported in rows of their own,
    beside a random real subset with the same soft labels, never mixed into the hard-label results."""

    enabled: bool = False
    temperature: float = Field(1.0, gt=0)


class EvaluateSpec(StrictModel):
    """The protocol: every set trains ``networks`` fresh networks of each of ``architectures`` for ``epochs``
    epochs (SGD lr ``lr``, momentum 0.9, ×0.1 at half), with and/or without DSA (``augment``), scored once at
    the end on the test split. Baselines with the same protocol: a random real subset and herding at the same
    IPC (and at ``baseline_ipcs`` for the accuracy-vs-IPC plot), and the full training set (``full_epochs``)."""

    networks: PositiveInt = 3
    epochs: PositiveInt = 300
    lr: float = Field(0.01, gt=0)
    batch_size: PositiveInt = 256
    augment: list[bool] = Field(default_factory=lambda: [False, True])
    architectures: list[Literal["convnet", "mlp", "resnet"]] = Field(default_factory=lambda: list(ARCHITECTURES))
    baseline_ipcs: list[PositiveInt] = Field(default_factory=lambda: [1, 10, 50])
    full_epochs: PositiveInt = 3
    seeds: list[int] = Field(default_factory=lambda: [0], description="distillation seeds")

    @model_validator(mode="after")
    def _nonempty(self) -> EvaluateSpec:
        for name in ("augment", "architectures", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"evaluate.{name} must list at least one entry")
        return self


class DatasetRecipe(StrictModel):
    """One condensation: ``distill run recipes/dataset/<method>_mnist_ipc<N>.yaml``."""

    name: str
    task: Literal["dataset"]
    data: DataSpec = Field(default_factory=DataSpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    method: MethodSpec = Field(default_factory=MethodSpec)
    soft_labels: SoftLabelSpec = Field(default_factory=SoftLabelSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    progress: bool = True

    @model_validator(mode="after")
    def _condensing_network_is_evaluated(self) -> DatasetRecipe:
        """The IPC curve and the baselines are read on the condensing architecture: it must be evaluated."""
        if self.network.name not in self.evaluate.architectures:
            raise ValueError(f"evaluate.architectures {self.evaluate.architectures} leaves out the condensing network "
                             f"{self.network.name!r} (network.name), on which the baselines are compared; add it")
        return self
