"""The stages of a dataset-distillation run: real data, the full-data teacher, condensation per seed, and
the evaluation protocol applied alike to the synthetic sets and to their baselines."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from distill.data import load_dataset
from distill.data.custom import require_labels
from distill.engine.cache import content_hash, read_file_entry, write_file_entry
from distill.experiment.runner import Run
from distill.taps import tapped
from distill.tasks.dataset.augment import DSA
from distill.tasks.dataset.condense import class_bank, network_factory, run_condenser, seeded_start
from distill.tasks.dataset.experts import load_trajectories, save_trajectories, train_expert_trajectories
from distill.tasks.dataset.methods import CONDENSERS
from distill.tasks.dataset.metrics import ddranking_scores, evaluate_set, herding_subset, random_subset, train_on_set
from distill.tasks.dataset.recipe import DatasetRecipe
from distill.tasks.dataset.synthetic import ClassBank, SyntheticSet

#: the file of distillation seed ``s``'s synthetic set inside a run folder
SET_FILE = "synthetic_seed{seed}.safetensors"
#: random real subsets are drawn with seed ``BASELINE_SEED + s`` for distillation seed ``s``
BASELINE_SEED = 10_000


def stage_identity(*parts) -> dict:
    """The identity of a stored stage: what it was made from (recipe parts as pydantic models, plain values such
    as the real images' ``ClassBank.fingerprint``). A run folder reused with a changed recipe, or with a data file
    changed under the same path, recomputes what changed instead of serving a stale set, teacher or expert."""
    return {"parts": [p.model_dump(mode="json") if hasattr(p, "model_dump") else p for p in parts]}


def load_real(recipe: DatasetRecipe) -> tuple[ClassBank, Tensor, Tensor]:
    """The training set as a ClassBank (its first ``data.limit_train`` images), and the test images and labels:
    read and checked by the shared loaders (``distill.data``), the user's own files as any dataset; with
    ``data.standardize`` every channel shifted and scaled by the training images' mean and std."""
    splits = require_labels(load_dataset(recipe.data.name, **recipe.data.options), "dataset distillation")
    bank, test_images = class_bank(splits), splits.test.x
    if recipe.data.limit_train:  # copies, so the subset does not keep the whole training set alive
        keep = recipe.data.limit_train
        bank = ClassBank(bank.images[:keep].clone(), bank.labels[:keep].clone(), bank.num_classes)
    if recipe.data.standardize:
        mean = bank.images.mean(dim=(0, 2, 3), keepdim=True)
        std = bank.images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        bank = ClassBank((bank.images - mean) / std, bank.labels, bank.num_classes)
        test_images = (test_images - mean) / std
    return bank, test_images, splits.test.y


def full_data_teacher(recipe: DatasetRecipe, run: Run, bank: ClassBank):
    """A ConvNet trained on the full training set (cached in the run): herding's features and the soft labels' teacher."""
    factory = network_factory(recipe.network.name, bank, recipe.network.width, recipe.network.depth)
    path = run.folder / "full_data_teacher.safetensors"
    identity = stage_identity(recipe.data, bank.fingerprint, recipe.network, recipe.evaluate.full_epochs,
                              recipe.evaluate.lr, recipe.evaluate.batch_size)
    if read_file_entry(path, identity):
        model = factory()
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    model = train_on_set(bank.images, bank.labels, factory, epochs=recipe.evaluate.full_epochs, lr=recipe.evaluate.lr,
                         batch_size=recipe.evaluate.batch_size, generator=torch.Generator().manual_seed(BASELINE_SEED),
                         progress=recipe.progress)
    write_file_entry(path, identity, lambda staging: save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                                               str(staging)))
    return model.eval()


def expert_trajectories(recipe: DatasetRecipe, run: Run, bank: ClassBank, factory, augment) -> list[Tensor]:
    """MTT's experts, trained once per run folder (expert_trajectories.safetensors)."""
    path = run.folder / "expert_trajectories.safetensors"
    spec = recipe.method.experts
    identity = stage_identity(recipe.data, bank.fingerprint, recipe.network, spec, recipe.method.dsa)
    if read_file_entry(path, identity):
        return load_trajectories(path)
    data = bank
    if spec.limit_train:
        generator = torch.Generator().manual_seed(BASELINE_SEED)
        keep = torch.randperm(len(bank.labels), generator=generator)[: spec.limit_train]
        data = ClassBank(bank.images[keep], bank.labels[keep], bank.num_classes)
    trajectories = train_expert_trajectories(data, factory, experts=spec.count, epochs=spec.epochs, lr=spec.lr,
                                             batch_size=spec.batch_size, augment=augment,
                                             generator=torch.Generator().manual_seed(BASELINE_SEED + 1),
                                             progress=recipe.progress, run=run, label="experts")
    write_file_entry(path, identity, lambda staging: save_trajectories(trajectories, staging))
    return trajectories


def condense_seed(recipe: DatasetRecipe, run: Run, bank: ClassBank, seed: int, trajectories) -> dict:
    """One distillation seed's synthetic set: the stored one when it was made from this recipe, else condensed
    as stage ``condense_seed<seed>`` (checkpointed every ``method.checkpoint_every`` iterations; under
    ``--resume`` it goes on from its newest checkpoint)."""
    method, network = recipe.method, recipe.network
    path = run.folder / SET_FILE.format(seed=seed)
    identity = stage_identity(recipe.data, bank.fingerprint, network,
                              method.model_dump(mode="json", exclude={"checkpoint_every"}), seed)
    if read_file_entry(path, identity):
        return {"synthetic": SyntheticSet.load(path), "history": [], "seconds": None}
    factory = network_factory(network.name, bank, network.width, network.depth)
    synthetic, generator = seeded_start(bank, method.ipc, method.init, seed)
    options = {**method.options, **({"trajectories": trajectories} if trajectories is not None else {})}
    condenser = CONDENSERS.get(method.name)(synthetic, bank, factory, DSA() if method.dsa else None, tap=network.tap,
                                            **options)
    done = run_condenser(condenser, method.iterations, generator, recipe.progress, f"{method.name} seed {seed}",
                         folder=run.folder / f"condense_seed{seed}", every=method.checkpoint_every,
                         resume=run.resume, key=content_hash(identity))
    history, seconds = done.history, done.seconds
    write_file_entry(path, identity, synthetic.save)
    return {"synthetic": synthetic, "history": history, "seconds": seconds}


def protocol(recipe: DatasetRecipe, bank: ClassBank, test: tuple[Tensor, Tensor], images: Tensor, labels: Tensor,
             seed: int, soft_labels: Tensor | None = None) -> dict:
    """Accuracies (%) of fresh networks trained on ``(images, labels)``: ``{architecture: {augment: result}}``."""
    spec, network = recipe.evaluate, recipe.network
    out = {}
    for architecture in spec.architectures:
        factory = network_factory(architecture, bank, network.width, network.depth)
        out[architecture] = {}
        for augment in spec.augment:
            out[architecture][augment] = evaluate_set(
                images, labels, *test, factory, networks=spec.networks, seed=seed, epochs=spec.epochs, lr=spec.lr,
                batch_size=spec.batch_size, augment=DSA() if augment else None, soft_labels=soft_labels,
                temperature=recipe.soft_labels.temperature)
    return out


def pooled(results: list[dict]) -> dict:
    """Several seeds' protocol results merged: the accuracies of every network of every seed, with mean ± std."""
    merged = {}
    for architecture in results[0]:
        merged[architecture] = {}
        for augment in results[0][architecture]:
            accuracies = [a for r in results for a in r[architecture][augment]["accuracies"]]
            mean = sum(accuracies) / len(accuracies)
            std = (sum((a - mean) ** 2 for a in accuracies) / len(accuracies)) ** 0.5
            merged[architecture][augment] = {"accuracies": accuracies, "mean": mean, "std": std}
    return merged


def teacher_soft_labels(teacher, images: Tensor) -> Tensor:
    """The full-data teacher's logits for ``images`` (the soft labels of the soft-label rows)."""
    with torch.no_grad():
        return teacher(images)


def run_dataset_recipe(recipe: DatasetRecipe, run: Run) -> dict:
    """Every stage; the sets' and baselines' protocol results, DD-Ranking scores and facts for the report."""
    bank, *test = load_real(recipe)
    test = tuple(test)
    method, ipc = recipe.method, recipe.method.ipc
    teacher = full_data_teacher(recipe, run, bank)
    factory = network_factory(recipe.network.name, bank, recipe.network.width, recipe.network.depth)
    trajectories = (expert_trajectories(recipe, run, bank, factory, DSA() if method.dsa else None)
                    if method.name == "mtt" else None)
    condensed = [condense_seed(recipe, run, bank, seed, trajectories) for seed in recipe.evaluate.seeds]
    sets = {method.name: pooled([protocol(recipe, bank, test, c["synthetic"].images.detach(), c["synthetic"].labels,
                                          seed) for c, seed in zip(condensed, recipe.evaluate.seeds)])}
    randoms = [random_subset(bank, ipc, torch.Generator().manual_seed(BASELINE_SEED + s)) for s in recipe.evaluate.seeds]
    sets["random"] = pooled([protocol(recipe, bank, test, *subset, seed)
                             for subset, seed in zip(randoms, recipe.evaluate.seeds)])
    with tapped(teacher, recipe.network.tap, "full-data teacher") as features:
        herding = herding_subset(bank, ipc, features)
    sets["herding"] = pooled([protocol(recipe, bank, test, *herding, seed) for seed in recipe.evaluate.seeds])
    full = evaluate_set(bank.images, bank.labels, *test, factory, networks=recipe.evaluate.networks,
                        seed=recipe.evaluate.seeds[0], epochs=recipe.evaluate.full_epochs, lr=recipe.evaluate.lr,
                        batch_size=recipe.evaluate.batch_size)
    soft = {}
    if recipe.soft_labels.enabled:
        for name, chosen in ((method.name, [(c["synthetic"].images.detach(), c["synthetic"].labels) for c in condensed]),
                             ("random", randoms)):
            soft[name] = pooled([protocol(recipe, bank, test, images, labels, seed, teacher_soft_labels(teacher, images))
                                 for (images, labels), seed in zip(chosen, recipe.evaluate.seeds)])
    curve = ipc_curve(recipe, bank, test, teacher, sets)
    return {"sets": sets, "soft_labels": soft, "full": full, "ipc": ipc, "curve": curve,
            "ranking": ranking(recipe, sets, soft, full), "synthetic": condensed[0]["synthetic"],
            "condensation": [{"seed": s, "seconds": c["seconds"], "history": c["history"],
                              "iterations_per_second": len(c["history"]) / c["seconds"] if c["seconds"] else None}
                             for s, c in zip(recipe.evaluate.seeds, condensed)]}


def ranking(recipe: DatasetRecipe, sets: dict, soft: dict, full: dict) -> dict:
    """DD-Ranking's scores on the condensing architecture, per evaluation augmentation: the hard-label set
    against the random subset (``hard``), and with teacher soft labels against the random subset with the
    same soft labels (``soft``); the hard-label recovery always uses the hard-label accuracies."""
    name, architecture = recipe.method.name, recipe.network.name
    out = {}
    for augment in recipe.evaluate.augment:
        # per run: each network of the method against the random subsets' mean (their seeds are not paired)
        hard = sets[name][architecture][augment]["accuracies"]
        out[augment] = {"hard": ddranking_scores(hard, sets["random"][architecture][augment]["mean"], full["mean"], hard)}
        if soft:
            own = soft[name][architecture][augment]["accuracies"]
            out[augment]["soft"] = ddranking_scores(own, soft["random"][architecture][augment]["mean"], full["mean"],
                                                    hard if len(hard) == len(own) else sum(hard) / len(hard))
    return out


def ipc_curve(recipe: DatasetRecipe, bank: ClassBank, test, teacher, sets: dict) -> dict:
    """Random-subset and herding accuracy at each of ``evaluate.baseline_ipcs`` (condensing architecture, first
    evaluation augmentation); at the recipe's own IPC the baseline rows already measured are reused."""
    spec, architecture = recipe.evaluate, recipe.network.name
    factory = network_factory(architecture, bank, recipe.network.width, recipe.network.depth)
    augment = spec.augment[0]
    curve = {"random": {}, "herding": {}}
    for ipc in sorted(set(spec.baseline_ipcs) | {recipe.method.ipc}):
        if ipc > min(len(p) for p in bank.indices):
            continue
        for name in curve:
            if ipc == recipe.method.ipc:
                curve[name][ipc] = sets[name][architecture][augment]
                continue
            if name == "random":
                images, labels = random_subset(bank, ipc, torch.Generator().manual_seed(BASELINE_SEED))
            else:
                with tapped(teacher, recipe.network.tap, "full-data teacher") as features:
                    images, labels = herding_subset(bank, ipc, features)
            curve[name][ipc] = evaluate_set(images, labels, *test, factory, networks=spec.networks,
                                            seed=spec.seeds[0], epochs=spec.epochs, lr=spec.lr,
                                            batch_size=spec.batch_size, augment=DSA() if augment else None)
    return curve
