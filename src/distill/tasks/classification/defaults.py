"""What a classification recipe that names only data, teacher and student distils with, and for how long.

The default depends on how many labels the training set has per class. Below
:data:`PLENTY_OF_LABELS` it is function matching (Beyer et al., CVPR 2022, "Knowledge
distillation: A good teacher is patient and consistent"): KD on the logits at T = 1 with no
labels, teacher and student seeing the same mixup-blended input, on the training set plus any
unlabeled transfer set, for a long schedule. With plenty of labels the capped schedule is too
short for a label-free loss to catch up with the labels, so the default is Hinton et al.'s KD
(2015): T = 4 and an equal share of cross-entropy on clean inputs. ``benchmarks/default_vs_scratch.py``
measured both against the same student trained alone (BENCHMARKS.md, "A default that beats scratch").

The schedule is scaled to the data: :data:`EPOCHS` passes over the inputs the student sees,
at least :data:`MIN_STEPS` and at most :data:`MAX_STEPS` optimizer steps.
"""

from __future__ import annotations

from distill.data import DataSplits
from distill.engine.config import TrainConfig
from distill.tasks.classification.recipe import ClassificationRecipe, DistillSpec

FUNCTION_MATCHING = {
    "pairs": [{"student": "output", "teacher": "output", "loss": "kd", "options": {"temperature": 1.0, "alpha": 1.0}}],
    "augment": "mixup",
    "use_transfer": True,
}
#: Hinton et al.'s KD with labels, the default from this many labelled training samples per class
CLASSIC_KD = {
    "pairs": [{"student": "output", "teacher": "output", "loss": "kd", "options": {"temperature": 4.0, "alpha": 0.5}}],
    "use_transfer": False,
}
#: labelled training samples per class from which the labels join the default (MNIST has 6,000, MNIST-1D 400)
PLENTY_OF_LABELS = 1_000
BATCH_SIZE = 100
LEARNING_RATE = 3e-3
EPOCHS = 100
MIN_STEPS = 5_000
MAX_STEPS = 10_000


def default_train(inputs: int) -> TrainConfig:
    """Adam at 3e-3 with a cosine schedule, batch 100 (a quarter of a smaller set), for ``EPOCHS`` passes over
    ``inputs`` samples clipped to ``[MIN_STEPS, MAX_STEPS]`` steps; ten evaluations."""
    batch = max(1, min(BATCH_SIZE, inputs // 4))
    steps = min(MAX_STEPS, max(MIN_STEPS, EPOCHS * (inputs // batch)))
    return TrainConfig(steps=steps, batch_size=batch, lr=LEARNING_RATE, schedule="cosine", eval_every=steps // 10)


def complete_recipe(recipe: ClassificationRecipe, splits: DataSplits) -> tuple[ClassificationRecipe, list[str]]:
    """``recipe`` with its missing ``distill`` and ``train`` sections filled in, and one note per choice made
    (printed under the results table and written to ``report.md``)."""
    notes, update = [], {}
    distill = recipe.distill
    if distill is None:
        per_class = len(splits.train) / max(splits.num_classes, 1)
        if per_class >= PLENTY_OF_LABELS:
            distill = update["distill"] = DistillSpec.model_validate(CLASSIC_KD)
            notes.append(f"Note: the recipe names no `distill` section and the training set has {per_class:,.0f} labels "
                         f"per class (at least {PLENTY_OF_LABELS:,}), so the student learns by KD (Hinton et al. 2015): "
                         "T = 4 and an equal share of cross-entropy on the labels, clean inputs. With this many labels "
                         "function matching (no labels) fell behind the student trained alone within the default "
                         "schedule on MNIST; see BENCHMARKS.md, 'A default that beats scratch'.")
        else:
            distill = update["distill"] = DistillSpec.model_validate(FUNCTION_MATCHING)
            notes.append(f"Note: the recipe names no `distill` section and the training set has {per_class:,.0f} labels "
                         f"per class (fewer than {PLENTY_OF_LABELS:,}), so the student learns by function matching "
                         "(Beyer et al. 2022): KD at T = 1 on the logits, teacher and student seeing the same "
                         "mixup-blended input, no labels. It beat the student trained alone on MNIST-1D and tied on "
                         "the small sets of BENCHMARKS.md ('A default that beats scratch'); it needs a long "
                         "schedule, and a shorter `train` may lose to the student alone.")
    if recipe.train is None:
        transfer = len(splits.transfer) if distill.use_transfer and splits.transfer is not None else 0
        inputs = len(splits.train) + transfer
        update["train"] = default_train(inputs)
        notes.append(f"Note: the recipe names no `train` section, so every student (distilled and scratch) trains "
                     f"{update['train'].steps:,} steps of batch {update['train'].batch_size} (Adam 3e-3, cosine): "
                     f"{EPOCHS} passes over its {inputs:,} inputs, kept within {MIN_STEPS:,}–{MAX_STEPS:,} steps.")
    return (recipe.model_copy(update=update) if update else recipe), notes
