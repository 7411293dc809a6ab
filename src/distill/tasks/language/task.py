"""The ``language`` family in the ``TASKS`` registry: distil a causal LM, score a student on held-out text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from distill.errors import ConfigError
from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.experiment.tasks import Outcome, Task, TaskOption, register_task
from distill.metrics.cost import parameter_count
from distill.tasks.language.corpus import pack_blocks, text_files
from distill.tasks.language.methods import LANGUAGE_LOSSES
from distill.tasks.language.methods.prune import PRUNERS
from distill.tasks.language.metrics import evaluate_model
from distill.tasks.language.models import load_causal_lm
from distill.tasks.language.objectives import prediction_mask
from distill.tasks.language.recipe import LanguageRecipe
from distill.tasks.language.report import language_table, plot_curves, samples_markdown, save_evaluation
from distill.tasks.language.run import (
    EVAL_K,
    STUDENT_FOLDER,
    prepare,
    run_language_recipe,
    teacher_cache,
    teacher_row,
    teacher_stats,
)


class LanguageTask(Task):
    """Language-model distillation: a Hugging Face causal LM (SmolLM2 by default) into a small LM with
    its tokenizer, from a top-k teacher cache or the live teacher."""

    name = "language"
    recipe = LanguageRecipe
    methods = LANGUAGE_LOSSES
    listings = {"pruners": PRUNERS}
    eval_options = (TaskOption("--text", "text", "scores a language model on this .txt / .jsonl file instead of "
                                                 "the held-out text", "FILE", Path),)

    def execute(self, recipe: LanguageRecipe, run: Run) -> Outcome:
        rows, details = run_language_recipe(recipe, run)
        notes = [f"held-out: {details['eval_tokens']:,} predicted tokens of documents never trained on; agreement and "
                 f"KL against the teacher's top-{EVAL_K} + tail (a lower bound of the full KL)",
                 f"student trained {details['training']['seconds']:.0f} s; saved to {STUDENT_FOLDER}/ (transformers loads it)"]
        curve = plot_curves({rows[1]["model"]: details["training"]["curve"]}, run.folder / "perplexity.png",
                            details["teacher"]["perplexity"])
        return Outcome(language_table(rows, recipe.name, notes), details,
                       [("Held-out perplexity during training", curve)], [samples_markdown(details["samples"])])

    def evaluate(self, folder: Path, recipe: LanguageRecipe, weights: Path | None = None,
                 text: Path | None = None) -> Table:
        """The student (or the model folder ``weights``) beside the teacher, on the run's held-out text or on
        the ``text`` file; an evaluation on a file is also written to ``eval_<file name>.json`` and ``.md``."""
        model_folder = Path(weights) if weights else Path(folder) / STUDENT_FOLDER
        if not (model_folder / "config.json").is_file():
            raise ConfigError(f"{model_folder} is not a Hugging Face model folder (no config.json); pass --weights "
                              "a folder written by save_pretrained.")
        corpus = text_files([str(text)], source="--text") if text is not None else None
        model = load_causal_lm(model_folder)  # what the user can get wrong is read before the teacher loads
        context = prepare(recipe)
        length = recipe.data.block_length
        if corpus is not None:
            chosen = pack_blocks(context.tokenizer, corpus, length, recipe.data.eval_blocks, 0, source=f"--text {text}",
                                 remedy=f"give a text of at least {length} tokens (the run's data.block_length)")
            identity = {**context.identity["eval"], "text": corpus.digest(), "packing": f"eval-file blocks={len(chosen)}"}
            context = dataclasses.replace(context, eval_blocks=chosen, identity={**context.identity, "eval": identity})
        cache = teacher_cache(context, "eval", EVAL_K)
        scores = evaluate_model(model, context.eval_blocks, cache)
        rows = [{"model": str(model_folder), "parameters": parameter_count(model), **scores},
                teacher_row(context, teacher_stats(cache))]
        blocks, tokens = len(context.eval_blocks), int(prediction_mask(context.eval_blocks).sum())
        where = text or "the held-out text"
        cap = f", at most data.eval_blocks = {recipe.data.eval_blocks}" if recipe.data.eval_blocks else ""
        notes = [f"{tokens:,} predicted tokens of {where} ({blocks} blocks of {length} tokens{cap}); agreement and KL "
                 f"against the teacher's top-{EVAL_K} + tail"]
        table = language_table(rows, f"{recipe.name}: evaluation on {where}", notes)
        if text is not None:
            save_evaluation(table, Path(folder) / f"eval_{Path(text).stem}",
                            {"text": str(text), "weights": str(model_folder), "tokens": tokens, "blocks": blocks})
        return table

    def export(self, folder: Path, recipe: LanguageRecipe, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        raise ConfigError(f"a language run's student is already exported as a Hugging Face folder: "
                          f"{Path(folder) / STUDENT_FOLDER} (load it with AutoModelForCausalLM.from_pretrained).")


register_task(LanguageTask())
