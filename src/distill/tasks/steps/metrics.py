"""Score generators against held-out data, beside the noise floor of two real draws."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from distill.data.base import DataSplits
from distill.metrics import features, frechet_distance, label_agreement, mmd_rbf, precision_recall, sliced_wasserstein

CHUNK = 500
MMD_POINTS = 2000  # MMD is quadratic in n; the first 2,000 points of each set keep it to ~1 s


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
    """Metrics of samples against ``n`` held-out test points; the floor scores ``n`` training
    points (an independent real draw) the same way.

    2-D data: sliced Wasserstein (Bonneel et al., 2015) and MMD (on at most ``MMD_POINTS``
    points). Images: Fréchet distance
    and precision/recall on ``classifier`` features, plus label agreement when conditional.
    """

    def __init__(self, splits: DataSplits, n: int, seed: int, conditional: bool,
                 classifier: nn.Module | None = None, layer: str = "head.1") -> None:
        test_x, test_y = splits.test.x, splits.test.y
        n = min(n, len(test_x), len(splits.train))
        generator = torch.Generator().manual_seed(seed)
        pick_test = torch.randperm(len(test_x), generator=generator)[:n]
        pick_train = torch.randperm(len(splits.train), generator=generator)[:n]
        self.real, self.labels = test_x[pick_test], test_y[pick_test]
        self.noise = torch.randn(self.real.shape, generator=generator)
        self.conditional, self.classifier, self.layer, self.seed = conditional, classifier, layer, seed
        self.real_features = None if classifier is None else features(classifier, self.real, layer)
        self.floor = self.score(splits.train.x[pick_train], splits.train.y[pick_train])

    def score(self, samples: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """The metrics of ``samples`` (with the labels they were conditioned on); NaN if any diverged."""
        if not torch.isfinite(samples).all():
            names = ("swd", "mmd") if self.classifier is None else ("fd", "precision", "recall")
            return dict.fromkeys(names, float("nan"))
        if self.classifier is None:
            flat, real = samples.flatten(1), self.real.flatten(1)
            return {"swd": sliced_wasserstein(real, flat), "mmd": mmd_rbf(real[:MMD_POINTS], flat[:MMD_POINTS])}
        fake_features = features(self.classifier, samples, self.layer)
        precision, recall = precision_recall(self.real_features, fake_features)
        scores = {"fd": frechet_distance(self.real_features, fake_features), "precision": precision, "recall": recall}
        if self.conditional and labels is not None:
            scores["agreement"] = label_agreement(self.classifier, samples, labels)
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
