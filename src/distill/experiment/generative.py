"""What every family that trains or scores a generative model shares: the data and diffusion-model
sections of a recipe, the cached training of a diffusion / flow model and of the feature classifier
image metrics read, and the scorer of samples against held-out data beside the data's own noise floor.

The steps family trains its teacher with these; the score family trains its prior with the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from distill.data.base import DataSplits
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import build_denoiser
from distill.diffusion.objective import DenoisingObjective
from distill.diffusion.process import build_process
from distill.engine.cache import data_identity, fit_or_load
from distill.engine.config import TrainConfig
from distill.errors import ConfigError
from distill.experiment.recipe import StrictModel
from distill.metrics import features, frechet_distance, label_agreement, mmd_rbf, precision_recall, sliced_wasserstein
from distill.metrics_excess import EXCESS_KEYS, FrechetExcess, SlicedExcess
from distill.models import build_model
from distill.supervised import SupervisedObjective

TRAIN_ONLY = {"progress", "tensorboard", "log_every"}
CHUNK = 500
MMD_POINTS = 2000  # MMD is quadratic in n; the first 2,000 points of each set keep it to ~1 s


class GenDataSpec(StrictModel):
    """A 2-D toy (``8gaussians``, ``checkerboard``, ``moons``, ``swissroll``) or an image set
    (``digits``, ``mnist``) rescaled to [−1, 1]."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class DiffusionModelSpec(StrictModel):
    """A many-step diffusion / flow model: network, process, parameterisation, sampler and its training."""

    model: Literal["mlp", "unet"] = "mlp"
    options: dict[str, Any] = Field(default_factory=dict)
    process: Literal["flow", "diffusion"] = "flow"
    prediction: Literal["eps", "v", "x0", "velocity"] = "velocity"
    conditional: bool = False
    cond_drop: float = Field(0.1, ge=0, lt=1)
    guidance: float = 1.0
    clip: float | None = Field(None, gt=0)
    solver: Literal["ddim", "euler", "heun"] = "heun"
    steps: PositiveInt = 32
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=4000, batch_size=256))


class ClassifierSpec(StrictModel):
    """The classifier whose features the image metrics use; trained by distill on the same data."""

    model: str = "convnet"
    options: dict[str, Any] = Field(default_factory=lambda: {"channels": [16, 32, 32]})
    layer: str = "head.1"
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=2, batch_size=100, lr=3e-3))


def frozen(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with gradients off."""
    return module.eval().requires_grad_(False)


def build_diffusion_net(spec: DiffusionModelSpec, splits: DataSplits, step_conditioned: bool = False) -> nn.Module:
    """A fresh network of ``spec``'s architecture for ``splits``' samples."""
    return build_denoiser(spec.model, splits.input_shape, splits.num_classes if spec.conditional else 0,
                          step_conditioned, **spec.options)


def build_diffusion_model(spec: DiffusionModelSpec, splits: DataSplits) -> Denoiser:
    """``spec``'s model, untrained: network, process, parameterisation and guidance."""
    torch.manual_seed(spec.train.seed)
    return Denoiser(build_diffusion_net(spec, splits), build_process(spec.process), spec.prediction,
                    splits.num_classes if spec.conditional else 0, spec.guidance, spec.clip)


def obtain_diffusion_model(data: dict, spec: DiffusionModelSpec, splits: DataSplits, run,
                           label: str = "teacher") -> tuple[Denoiser, dict]:
    """``spec``'s model, from the content-hash cache or trained on the engine (denoising or flow
    matching, with label dropout for classifier-free guidance); frozen, with its training info.
    ``data`` identifies the training data in the cache key (a recipe's data section)."""
    denoiser = build_diffusion_model(spec, splits)
    cache_spec = {"kind": "generative-teacher", "data": data_identity(data, splits),
                  **spec.model_dump(mode="json", exclude={"guidance", "clip", "solver", "steps", "train"}),
                  "train": spec.train.model_dump(mode="json", exclude=TRAIN_ONLY)}

    def fit() -> dict:
        result = run.train(DenoisingObjective(denoiser, spec.cond_drop if spec.conditional else 0.0), splits.train,
                           spec.train, label)
        return {"seconds": result.seconds, "loss": result.final.get("train_loss")}

    info, _ = fit_or_load(denoiser, cache_spec, fit)
    return frozen(denoiser), info


def obtain_metric_classifier(data: GenDataSpec, spec: ClassifierSpec, splits: DataSplits, run) -> nn.Module | None:
    """The feature classifier of the image metrics (None for 2-D data), cached like teachers."""
    if len(splits.input_shape) < 2:
        return None
    torch.manual_seed(spec.train.seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes, **spec.options)
    cache_spec = {"kind": "metric-classifier", "data": data_identity(data.model_dump(mode="json"), splits),
                  "model": spec.model,
                  "options": spec.options, "train": spec.train.model_dump(mode="json", exclude=TRAIN_ONLY)}

    def fit() -> dict:
        return {"seconds": run.train(SupervisedObjective(model), splits.train, spec.train, "classifier").seconds}

    fit_or_load(model, cache_spec, fit)
    return frozen(model)


def classifier_accuracy(classifier: nn.Module, splits: DataSplits) -> float:
    """The metric classifier's accuracy on the held-out test split (how much its features can be trusted)."""
    return label_agreement(classifier, splits.test.x, splits.test.y)


@dataclass
class SampleRow:
    """One generator at one step count: its metrics, NFE and sampling wall time."""

    model: str
    steps: int
    nfe: int
    metrics: dict[str, float]
    ms_per_sample: float
    samples: Tensor | None = field(default=None, repr=False)


class Scorer:
    """Metrics of samples against ``n`` held-out test points beside the noise floor: the same
    metrics on ``n`` other real points (an independent draw, kept as ``reference``).

    ``floor_from="train"``: the reference is ``n`` training points. ``"test"``: the test split is cut
    into two disjoint halves, samples are scored against half A and the floor is half B vs half A,
    so both come from the same held-out distribution (``n`` is capped at half the test split).

    2-D data: sliced Wasserstein (Bonneel et al., 2015) and MMD (on at most ``MMD_POINTS``
    points). Images: Fréchet distance
    and precision/recall on ``classifier`` features, plus label agreement when conditional.
    With ``bootstrap`` > 0 every score also holds the headline distance's excess over the floor and
    its 95 % interval from that many resamples (:mod:`distill.metrics_excess`), and ``floor`` holds
    ``floor_spread``, the floor's bootstrap standard deviation.
    """

    def __init__(self, splits: DataSplits, n: int, seed: int, conditional: bool,
                 classifier: nn.Module | None = None, layer: str = "head.1",
                 floor_from: Literal["train", "test"] = "train", bootstrap: int = 0) -> None:
        test_x, test_y = splits.test.x, splits.test.y
        generator = torch.Generator().manual_seed(seed)
        if floor_from == "train":
            n = min(n, len(test_x), len(splits.train))
            pick_test = torch.randperm(len(test_x), generator=generator)[:n]
            pick_reference = torch.randperm(len(splits.train), generator=generator)[:n]
            reference = splits.train
        elif floor_from == "test":
            half = len(test_x) // 2
            n = min(n, half)
            order = torch.randperm(len(test_x), generator=generator)
            pick_test, pick_reference, reference = order[:n], order[half:half + n], splits.test
        else:
            raise ConfigError(f"floor_from must be 'train' or 'test', got {floor_from!r}.")
        if bootstrap < 0:
            raise ConfigError(f"bootstrap must be ≥ 0 resamples (0 skips the excess), got {bootstrap}.")
        self.real, self.labels = test_x[pick_test], test_y[pick_test]
        self.noise = torch.randn(self.real.shape, generator=generator)
        self.conditional, self.classifier, self.layer, self.seed = conditional, classifier, layer, seed
        self.real_cloud = self._cloud(self.real)
        self.reference, self.reference_labels = reference.x[pick_reference], reference.y[pick_reference]
        self.excess = None
        reference_cloud = self._cloud(self.reference)
        self.floor = self._metrics(self.reference, reference_cloud, self.reference_labels)
        if bootstrap:
            estimator = SlicedExcess if classifier is None else FrechetExcess
            self.excess = estimator(self.real_cloud, reference_cloud, resamples=bootstrap, seed=seed)
            self.floor["floor_spread"] = self.excess.floor_spread

    def _cloud(self, samples: Tensor) -> Tensor:
        """What the distances compare: flattened points (2-D data) or classifier features (images)."""
        return samples.flatten(1) if self.classifier is None else features(self.classifier, samples, self.layer)

    def _metrics(self, samples: Tensor, cloud: Tensor, labels: Tensor | None) -> dict[str, float]:
        real = self.real_cloud
        if self.classifier is None:
            return {"swd": sliced_wasserstein(real, cloud), "mmd": mmd_rbf(real[:MMD_POINTS], cloud[:MMD_POINTS])}
        precision, recall = precision_recall(real, cloud)
        scores = {"fd": frechet_distance(real, cloud), "precision": precision, "recall": recall}
        if self.conditional and labels is not None:
            scores["agreement"] = label_agreement(self.classifier, samples, labels)
        return scores

    def score(self, samples: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """The metrics of ``samples`` (with the labels they were conditioned on); NaN if any diverged."""
        if not torch.isfinite(samples).all():
            names = ("swd", "mmd") if self.classifier is None else ("fd", "precision", "recall")
            names += () if self.excess is None else EXCESS_KEYS
            return dict.fromkeys(names, float("nan"))
        cloud = self._cloud(samples)
        scores = self._metrics(samples, cloud, labels)
        if self.excess is not None:
            scores.update(self.excess(cloud).as_metrics())
        return scores

    def run(self, label: str, generator, steps: int) -> SampleRow:
        """Sample ``n`` points from ``generator`` in ``steps`` steps, time it and score it."""
        y = self.labels if self.conditional else None
        with torch.random.fork_rng():  # samplers that re-noise draw the same noise for every row
            torch.manual_seed(self.seed)
            started = time.perf_counter()
            device = generator.device
            samples = torch.cat([generator.sample(noise.to(device), None if y is None else y[i:i + CHUNK].to(device),
                                                  steps).cpu()
                                 for i, noise in zip(range(0, len(self.noise), CHUNK), self.noise.split(CHUNK))])
            ms = 1000 * (time.perf_counter() - started) / len(samples)
        return SampleRow(label, steps, generator.evaluations(steps, y), self.score(samples, y), ms, samples)
