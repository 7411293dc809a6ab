"""The ``language`` family in the ``TASKS`` registry: distil a causal LM, score a student on held-out text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from distill.errors import ConfigError
from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.experiment.tasks import Outcome, Task, TaskOption, register_task
from distill.metrics.cost import parameter_count
from distill.tasks.language.corpus import pack_text, text_files
from distill.tasks.language.methods import LANGUAGE_LOSSES
from distill.tasks.language.methods.alignment import teacher_views
from distill.tasks.language.methods.prune import PRUNERS
from distill.tasks.language.metrics import evaluate_model
from distill.tasks.language.models import load_causal_lm, load_tokenizer, restrict_vocabulary, tokenizer_hash
from distill.tasks.language.objectives import prediction_mask
from distill.tasks.language.recipe import LanguageRecipe
from distill.tasks.language.report import language_table, plot_curves, samples_markdown, save_evaluation
from distill.tasks.language.run import EVAL_K, STUDENT_FOLDER, LanguageContext, prepare, reference, run_language_recipe


class LanguageTask(Task):
    """Language-model distillation: a Hugging Face causal LM (SmolLM2 by default) into a small LM with
    its tokenizer (or one of its own), from a top-k teacher cache or the live teacher."""

    name = "language"
    recipe = LanguageRecipe
    methods = LANGUAGE_LOSSES
    listings = {"pruners": PRUNERS}
    eval_options = (TaskOption("--text", "text", "scores a language model on this .txt / .jsonl file instead of "
                                                 "the held-out text", "FILE", Path),)

    def execute(self, recipe: LanguageRecipe, run: Run) -> Outcome:
        rows, details = run_language_recipe(recipe, run)
        notes = [f"held-out: {details['eval_tokens']:,} predicted tokens of documents never trained on; "
                 f"{_scored_against(details['own_tokenizer'])}",
                 f"student trained {details['training']['seconds']:.0f} s; saved to {STUDENT_FOLDER}/ (transformers loads it)"]
        key = "bits_per_char" if details["own_tokenizer"] else "perplexity"  # per token, two tokenizers differ
        curve = plot_curves({rows[1]["model"]: details["training"]["curve"]}, run.folder / "perplexity.png",
                            rows[0][key], key)
        return Outcome(language_table(rows, recipe.name, notes), details,
                       [(f"Held-out {'bits per character' if details['own_tokenizer'] else 'perplexity'} during training",
                         curve)], [samples_markdown(details["samples"])])

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
        _check_tokenizer(model_folder, context)
        if context.student_vocabulary is not None:
            restrict_vocabulary(model, context.student_vocabulary)
        length = recipe.data.block_length
        if corpus is not None:
            context = _on_text(context, corpus, recipe, text)
        cache, teacher = reference(context)
        scores = evaluate_model(model, context.eval_blocks, cache, context.characters["eval"])
        rows = [{"model": str(model_folder), "parameters": parameter_count(model), **scores}, teacher]
        blocks, tokens = len(context.eval_blocks), int(prediction_mask(context.eval_blocks).sum())
        where = text or "the held-out text"
        cap = f", at most data.eval_blocks = {recipe.data.eval_blocks}" if recipe.data.eval_blocks else ""
        notes = [f"{tokens:,} predicted tokens of {where} ({blocks} blocks of {length} tokens{cap}); "
                 f"{_scored_against(context.own_tokenizer is not None)}"]
        table = language_table(rows, f"{recipe.name}: evaluation on {where}", notes)
        if text is not None:
            save_evaluation(table, Path(folder) / f"eval_{Path(text).stem}",
                            {"text": str(text), "weights": str(model_folder), "tokens": tokens, "blocks": blocks})
        return table

    def export(self, folder: Path, recipe: LanguageRecipe, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        raise ConfigError(f"a language run's student is already exported as a Hugging Face folder: "
                          f"{Path(folder) / STUDENT_FOLDER} (load it with AutoModelForCausalLM.from_pretrained).")


def _scored_against(own_tokenizer: bool) -> str:
    """The table's note on what the student is compared with."""
    if own_tokenizer:
        return ("the student has its own tokenizer, so its perplexity (per token) is not the teacher's: bits per "
                "character compare them, each on its own tokens of the same held-out characters")
    return f"agreement and KL against the teacher's top-{EVAL_K} + tail (a lower bound of the full KL)"


def _check_tokenizer(model_folder: Path, context: LanguageContext) -> None:
    """Refuse a model folder whose tokenizer is not the run's student's (its scores would be meaningless)."""
    if not (model_folder / "tokenizer_config.json").is_file():
        return
    if tokenizer_hash(load_tokenizer(model_folder)) != tokenizer_hash(context.student_tokenizer):
        raise ConfigError(f"the tokenizer in {model_folder} is not the one this run's student reads its text with; "
                          "evaluate a model with the run's tokenizer (its student/ folder), or give the recipe "
                          "that model's tokenizer.")


def _on_text(context: LanguageContext, corpus, recipe: LanguageRecipe, text: Path) -> LanguageContext:
    """``context`` with the held-out side replaced by the blocks of a user's text (and the teacher's views of them
    for a student with its own tokenizer)."""
    length = recipe.data.block_length
    packed = pack_text(context.student_tokenizer, corpus, length, recipe.data.eval_blocks, 0, source=f"--text {text}",
                       remedy=f"give a text of at least {length} tokens (the run's data.block_length)")
    identity = {**context.identity["eval"], "text": corpus.digest(), "packing": f"eval-file blocks={len(packed.blocks)}"}
    views = None if context.views is None else {**context.views, "eval": teacher_views(context.tokenizer, corpus, packed)}
    return dataclasses.replace(context, eval_blocks=packed.blocks, identity={**context.identity, "eval": identity},
                               characters={**context.characters, "eval": packed.characters()}, views=views)


register_task(LanguageTask())
