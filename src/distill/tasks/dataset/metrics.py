"""How a condensed set is scored: train fresh networks on it, test them on real data, compare with baselines.

The protocol is the field's (Zhao et al.'s DatasetCondensation ``evaluate_synset``): SGD with
momentum 0.9 and weight decay 5e-4, learning rate 0.01 cut ×0.1 at half the epochs, minibatches
of 256, optional augmentation with a fresh draw for every minibatch, and the accuracy of the
*final* network on the real test set, averaged over several random initialisations. No
checkpoint is ever chosen by test accuracy.

Baselines: a random real subset with the same images per class (what DC, DM and MTT start
from, and what DD-Ranking compares against), herding (Welling 2009, as iCaRL selects exemplars),
and the two DD-Ranking scores that separate a method's gain from its label and augmentation tricks.

Networks and augmentation come in as arguments — a ``network`` factory returning a fresh
``nn.Module`` and an optional ``augment`` object called as ``augment(images, generator)`` —
so this module does not depend on which architectures or augmentations exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.data import TensorDictDataset
from distill.engine.config import TrainConfig
from distill.engine.trainer import schedule_factor
from distill.errors import ConfigError, check_fraction, check_int, check_positive
from distill.metrics.classification import accuracy
from distill.tasks.dataset.objectives import SetObjective, fit
from distill.tasks.dataset.synthetic import ClassBank

__all__ = ["train_on_set", "test_accuracy", "evaluate_set", "random_subset", "herding_subset", "ddranking_scores"]


def _check_set(images: Tensor, labels: Tensor, what: str) -> None:
    if images.dim() < 2 or images.shape[0] == 0:
        raise ConfigError(f"{what} images must be a non-empty batch (N, ...); got shape {tuple(images.shape)}.")
    if labels.shape != (images.shape[0],):
        raise ConfigError(f"{what} labels must be (N,) = ({images.shape[0]},) to match the images; got "
                          f"{tuple(labels.shape)}. Pass one integer class label per image.")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dtype.is_complex:
        raise ConfigError(f"{what} labels must be integer class indices; got dtype {labels.dtype}. Pass soft "
                          "targets through soft_labels= and keep labels as the hard classes.")
    if (labels < 0).any():
        raise ConfigError(f"{what} labels must be class indices >= 0; got {int(labels.min())}.")


def train_on_set(images: Tensor, labels: Tensor, network: Callable[[], nn.Module], *, epochs: int,
                 lr: float = 0.01, batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4,
                 augment=None, generator: torch.Generator, soft_labels: Tensor | None = None,
                 temperature: float = 1.0, on_epoch: Callable[[int, float, float], None] | None = None,
                 progress: bool = False) -> nn.Module:
    """Train a fresh ``network()`` on ``(images, labels)`` with the field's fixed schedule, through the
    shared engine (:func:`distill.engine.trainer.train`); return it.

    Schedule (DatasetCondensation ``utils.evaluate_synset``): SGD, ``momentum`` 0.9,
    ``weight_decay`` 5e-4 on all parameters, ``lr`` 0.01 for the first ``epochs // 2`` epochs and
    ``lr * 0.1`` for the rest (the engine's ``"step"`` schedule); the momentum restarts at the cut
    (``restart_at_decay``), as the reference's new optimizer there does. (The reference
    runs ``epoch_eval_train + 1`` epochs and cuts after epoch index ``epoch_eval_train // 2 + 1``;
    here exactly ``epochs`` epochs run and the cut is at ``epochs // 2``. The reference uses 300
    epochs without and 1000 with augmentation.) Each epoch visits the set in a new random order in
    minibatches of ``batch_size``, the last one possibly smaller (as a shuffling ``DataLoader`` with
    ``drop_last=False``).

    ``augment``, when given, is called as ``augment(batch, generator)`` on every minibatch, so
    every minibatch gets a fresh draw (evaluation-time DSA; with ``DSA`` the images of one minibatch share
    the draw, where the reference draws per image). With ``soft_labels`` (``(N, K)``
    logits) the loss is ``T² · KL(softmax(soft_labels/T) ‖ softmax(outputs/T))`` (batch mean,
    Hinton's ``T²`` keeps the gradient scale of ``T = 1``); otherwise cross-entropy on ``labels``.

    Determinism: one seed is drawn from ``generator`` first; the network is built under it and it is
    the engine's seed (shuffling); the global torch RNG is restored afterwards. Augmentation draws from
    ``generator`` itself. Same generator state, same network; on one device and thread count, bit for bit.

    ``on_epoch(epoch, lr, mean_loss)``, when given, is called after every epoch (the loss is
    only read back then, so leaving it out keeps training free of host syncs). ``progress`` shows
    a bar over the optimizer steps.
    """
    _check_set(images, labels, "training")
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    check_positive("lr", lr)
    if soft_labels is not None and (soft_labels.dim() != 2 or soft_labels.shape[0] != images.shape[0]):
        raise ConfigError(f"soft_labels must be logits (N, num_classes) with N = {images.shape[0]}; got "
                          f"{tuple(soft_labels.shape)}.")
    check_positive("temperature", temperature)

    tensors = {"x": images.detach().float(), "y": labels.detach().long()}
    if soft_labels is not None:
        tensors["target"] = F.softmax(soft_labels.detach().float().to(images.device) / temperature, dim=1)
    data = TensorDictDataset(**tensors)
    seed = int(torch.randint(2**31, (1,), generator=generator))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, drop_last=False, optimizer="sgd", lr=lr,
                         momentum=momentum, weight_decay=weight_decay, schedule="step", decay_at=0.5, decay=0.1,
                         restart_at_decay=True, seed=seed, log_every=10**9, progress=progress)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total = epochs * steps_per_epoch
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        model = network()
        objective = SetObjective(model, augment, generator, temperature, on_epoch, steps_per_epoch,
                                 lambda epoch: lr * schedule_factor(config, epoch * steps_per_epoch, total,
                                                                    steps_per_epoch))
        fit(objective, data, config, label="evaluate")
    return model.to(images.device)  # the engine trains on its accelerator; the network comes back beside the data


def test_accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``(images, labels)`` in percent (0–100).

    Evaluation mode, no gradients, batches of ``batch_size`` moved to the model's device; the
    model's train/eval mode is put back afterwards.
    """
    _check_set(images, labels, "test")
    check_int("batch_size", batch_size)
    return 100.0 * accuracy(model, images.float(), labels, batch_size)


test_accuracy.__test__ = False  # a library function, not a pytest test


def evaluate_set(images: Tensor, labels: Tensor, test_images: Tensor, test_labels: Tensor,
                 network: Callable[[], nn.Module], *, networks: int, seed: int, epochs: int, lr: float = 0.01,
                 batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4, augment=None,
                 soft_labels: Tensor | None = None, temperature: float = 1.0, test_batch_size: int = 1000,
                 progress: bool = False) -> dict:
    """Train ``networks`` fresh networks on the set and score each final network on the test set.

    Returns ``{"accuracies": [...], "mean": ..., "std": ...}`` in percent; ``std`` is the
    population standard deviation (``numpy.std``, ddof 0), as the reference reports. Network ``i``
    is trained with a generator seeded from ``(seed, i)`` alone (the ``i``-th draw of a generator
    seeded with ``seed``), so its accuracy does not depend on how many networks are evaluated.
    The network trained to the last epoch is what is scored: no checkpoint is picked by test
    accuracy. The other options are ``train_on_set``'s; ``progress`` shows a bar over networks.
    """
    check_int("networks", networks)
    check_int("epochs", epochs)
    _check_set(images, labels, "training")
    _check_set(test_images, test_labels, "test")
    if images.shape[1:] != test_images.shape[1:]:
        raise ConfigError(f"training and test images must have the same shape per image; got "
                          f"{tuple(images.shape[1:])} and {tuple(test_images.shape[1:])}.")
    seeds = torch.randint(2**62, (networks,), generator=torch.Generator().manual_seed(int(seed))).tolist()
    accuracies = []
    from distill.engine.progress import progress_bar

    with progress_bar("evaluate", networks, enabled=progress) as bar:
        for i, network_seed in enumerate(seeds):
            model = train_on_set(images, labels, network, epochs=epochs, lr=lr, batch_size=batch_size,
                                 momentum=momentum, weight_decay=weight_decay, augment=augment,
                                 generator=torch.Generator().manual_seed(network_seed), soft_labels=soft_labels,
                                 temperature=temperature)
            accuracies.append(test_accuracy(model, test_images, test_labels, batch_size=test_batch_size))
            bar.update(i + 1, {"acc": accuracies[-1]})
    mean = sum(accuracies) / len(accuracies)
    std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / len(accuracies))
    return {"accuracies": accuracies, "mean": mean, "std": std}


def _check_ipc(bank: ClassBank, ipc: int) -> None:
    check_int("ipc", ipc)
    smallest = min(len(pool) for pool in bank.indices)
    if smallest < ipc:
        small = [c for c, pool in enumerate(bank.indices) if len(pool) < ipc]
        raise ConfigError(f"ipc={ipc} needs {ipc} real images of every class; class(es) {small} have fewer "
                          f"(smallest: {smallest}). Lower ipc to at most {smallest}.")


def _class_labels(num_classes: int, ipc: int) -> Tensor:
    return torch.arange(num_classes).repeat_interleave(ipc)


def random_subset(bank: ClassBank, ipc: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``ipc`` real images of every class drawn at random without replacement, ordered by class.

    The baseline that DD-Ranking's improvement-over-random compares against, and the same draw
    as ``SyntheticSet.from_real`` makes from the same generator state (the reference's
    random-real initialisation). Returns ``(images (num_classes*ipc, C, H, W), labels)``.
    """
    _check_ipc(bank, ipc)
    images = torch.cat([bank.sample(c, ipc, generator) for c in range(bank.num_classes)])
    return images, _class_labels(bank.num_classes, ipc)


def _herd(features: Tensor, k: int) -> Tensor:
    """Indices of ``k`` distinct rows whose running mean greedily tracks the mean of all rows."""
    mean = features.mean(dim=0)
    chosen = torch.zeros(features.shape[0], dtype=torch.bool, device=features.device)
    running = torch.zeros_like(mean)
    picks = []
    for step in range(1, k + 1):
        distance = ((mean - (running + features) / step) ** 2).sum(dim=1)
        distance[chosen] = math.inf
        pick = int(torch.argmin(distance))  # first index on ties
        picks.append(pick)
        chosen[pick] = True
        running += features[pick]
    return torch.tensor(picks, dtype=torch.long)


def herding_subset(bank: ClassBank, ipc: int, embed: Callable[[Tensor], Tensor], *, batch_size: int = 1000,
                   normalize: bool = False) -> tuple[Tensor, Tensor]:
    """``ipc`` real images per class chosen by herding on ``embed``'s features; ordered by class.

    Herding (Welling 2009) as iCaRL selects exemplars (Rebuffi et al. 2017) and the DC paper's
    coreset baseline uses it: with ``μ`` the mean feature of the class, the ``k``-th pick is
    ``argmin_x ‖μ − (φ(x) + Σ_{j<k} φ(p_j)) / k‖`` over images not yet picked, so the running
    mean of the chosen features approaches ``μ``. Deterministic; ties go to the lower index.
    Within a class the images come in pick order. ``embed`` maps a batch of images to features
    ``(n, D)`` (e.g. a network trained on the full data) and is called in chunks of
    ``batch_size`` under ``torch.no_grad``; ``normalize`` L2-normalises features first, as iCaRL.
    """
    _check_ipc(bank, ipc)
    check_int("batch_size", batch_size)
    chosen = []
    for c in range(bank.num_classes):
        pool = bank.indices[c]
        with torch.no_grad():
            parts = [embed(bank.images[pool[s:s + batch_size]]) for s in range(0, len(pool), batch_size)]
        features = torch.cat([p.reshape(p.shape[0], -1) if p.dim() != 1 else p[:, None] for p in parts]).float()
        if features.shape[0] != len(pool):
            raise ConfigError(f"embed must return one feature row per image; got {features.shape[0]} rows for "
                              f"{len(pool)} images of class {c}.")
        if normalize:
            features = F.normalize(features, dim=1)
        chosen.append(pool[_herd(features, ipc).to(pool.device)])
    return bank.images[torch.cat(chosen)], _class_labels(bank.num_classes, ipc)


def _runs(name: str, value) -> list[float]:
    if isinstance(value, Tensor):
        values = [float(v) for v in value.flatten().tolist()]
    elif isinstance(value, (int, float)):
        values = [float(value)]
    else:
        try:
            values = [float(v) for v in value]
        except TypeError:
            raise ConfigError(f"{name} must be an accuracy in percent or a sequence of them (one per evaluation "
                              f"run); got {type(value).__name__}.") from None
    if not values:
        raise ConfigError(f"{name} is empty; pass an accuracy or one accuracy per evaluation run.")
    for v in values:
        if not 0.0 <= v <= 100.0:
            raise ConfigError(f"{name} must be accuracies in percent (0–100); got {v}. Multiply fractions by 100.")
    return values


def ddranking_scores(method_acc, random_acc, full_acc, method_hard_acc, *, weight: float = 0.5) -> dict:
    """DD-Ranking's label-robust scores (Li et al. 2025, "DD-Ranking: Rethinking the Evaluation of
    Dataset Distillation"; definitions from the NUS-HPC-AI-Lab/DD-Ranking README and
    ``ddranking/metrics/{hard,soft}_label.py``). All accuracies in percent:

    - ``method_acc`` = Acc(syn-any): the distilled set evaluated its own way (soft labels, its augmentation…);
    - ``random_acc`` = Acc(rdm-any): a random real subset of the same size evaluated the same way;
    - ``full_acc`` = Acc(real-hard): the full real training set with hard labels;
    - ``method_hard_acc`` = Acc(syn-hard): the distilled images with hard labels only.

    Implemented formulas:

    - hard label recovery ``HLR = Acc(real-hard) − Acc(syn-hard)`` (points; lower is better);
    - improvement over random ``IOR = Acc(syn-any) − Acc(rdm-any)`` (points; higher is better);
    - ``α = w·IOR − (1 − w)·HLR`` with ``w = weight`` (default 0.5, the leaderboard's);
    - label-robust score ``LRS = (e^α − e^{−1}) / (e − e^{−1}) × 100 %``.

    In ``α`` the two differences are taken as fractions (points / 100), so ``α ∈ [−1, 1]`` and LRS
    lands in [0, 100] as the paper states; the DD-Ranking code feeds percent points into ``exp``,
    which leaves that range — a deliberate difference.

    Each argument is one accuracy or a sequence with one accuracy per evaluation run (scalars are
    shared by all runs, sequences must have equal lengths). As DD-Ranking does, the scores are
    computed per run and then averaged: the result has ``hard_label_recovery``,
    ``improvement_over_random`` and ``label_robust_score`` (means), each with a ``_std``
    (population std, ``numpy.std``), ``runs``, and ``per_run`` lists.
    """
    check_fraction("weight", weight, "the weight w of improvement_over_random in the label-robust score")
    named = {"method_acc": method_acc, "random_acc": random_acc, "full_acc": full_acc,
             "method_hard_acc": method_hard_acc}
    values = {name: _runs(name, value) for name, value in named.items()}
    lengths = {len(v) for v in values.values()} - {1}
    if len(lengths) > 1:
        raise ConfigError(f"per-run accuracies must have equal lengths; got "
                          f"{ {name: len(v) for name, v in values.items()} }. Pass one accuracy per run to each.")
    runs = lengths.pop() if lengths else 1
    values = {name: v * runs if len(v) == 1 else v for name, v in values.items()}
    hlr = [f - h for f, h in zip(values["full_acc"], values["method_hard_acc"])]
    ior = [m - r for m, r in zip(values["method_acc"], values["random_acc"])]
    lrs = [100.0 * (math.exp(weight * i / 100.0 - (1.0 - weight) * h / 100.0) - math.exp(-1.0))
           / (math.e - math.exp(-1.0)) for i, h in zip(ior, hlr)]

    def mean_std(xs: list[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))

    out: dict = {"runs": runs, "per_run": {"hard_label_recovery": hlr, "improvement_over_random": ior,
                                            "label_robust_score": lrs}}
    for name, xs in out["per_run"].items():
        out[name], out[f"{name}_std"] = mean_std(xs)
    return out
