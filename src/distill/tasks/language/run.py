"""Stages of a ``language`` run: text and teacher, the teacher's top-k caches, the student's training,
evaluation on held-out text, samples and the Hugging Face student folder. A student with its own
tokenizer trains on its own tokens of the text, beside the teacher's tokens of the same characters."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from distill.data.tensors import TensorDictDataset
from distill.engine.cache import INFO_FILE, cached_entry, cached_tensors, entry_folder
from distill.engine.progress import progress_bar
from distill.errors import ConfigError
from distill.experiment.runner import Run
from distill.metrics.cost import parameter_count
from distill.signals import TopKCache, blocks_hash, build_topk_cache
from distill.tasks.language.corpus import (
    Corpus,
    generated_text,
    pack_text,
    shakespeare_plays,
    split_documents,
    text_files,
)
from distill.tasks.language.methods import LANGUAGE_LOSSES
from distill.tasks.language.methods.alignment import TeacherViews, teacher_views
from distill.tasks.language.methods.cross_tokenizer import CrossTokenizerObjective
from distill.tasks.language.methods.internals import internal_matching
from distill.tasks.language.methods.prune import calibration_blocks, cut
from distill.tasks.language.methods.vocabulary import min_edit_distance_map
from distill.tasks.language.metrics import evaluate_model, samples
from distill.tasks.language.models import (
    build_student,
    load_causal_lm,
    load_tokenizer,
    output_vocabulary,
    resolve_model_folder,
    restrict_vocabulary,
    tokenizer_hash,
    weights_hash,
)
from distill.tasks.language.objectives import (
    LanguageObjective,
    continuation_mask,
    live_signal,
    prediction_mask,
    sample_continuations,
)
from distill.tasks.language.own_tokenizer import load_tokenizer_file, train_tokenizer
from distill.tasks.language.recipe import TOPK_TEMPERATURE, LanguageRecipe

STUDENT_FOLDER = "student"  # the trained model alone, as save_pretrained writes it
TRAINING_FOLDER = "training"  # the training stage's checkpoints and per-step logs
EVAL_K = 128  # the held-out cache: agreement and KL are scored against the teacher's top-128


@dataclass
class LanguageContext:
    """The frozen teacher, its tokenizer and the student's packed text of both sides.

    ``characters``: side → the characters each block's predictions cover (for bits per character).
    A student with its own tokenizer (``own_tokenizer``) trains on blocks of its tokens; ``views``
    holds the teacher's tokens of the same text. ``student_vocabulary``: the ids a student folder's
    logits are cut to when its vocabulary is padded beyond the teacher's (same tokenizer).
    """

    teacher_folder: Path
    tokenizer: object
    teacher: nn.Module
    train_blocks: Tensor
    eval_blocks: Tensor
    identity: dict[str, dict[str, str]]  # side → {tokenizer, text, packing, teacher}
    characters: dict[str, Tensor] = field(default_factory=dict)
    own_tokenizer: object = None
    views: dict[str, TeacherViews] | None = None
    student_vocabulary: int | None = None

    @property
    def student_tokenizer(self):
        """The tokenizer of the student's text: its own, or the teacher's."""
        return self.own_tokenizer if self.own_tokenizer is not None else self.tokenizer


def load_corpus(recipe: LanguageRecipe) -> Corpus:
    """The recipe's documents."""
    data = recipe.data
    if data.corpus == "shakespeare":
        return shakespeare_plays()
    if data.corpus == "generated":
        return generated_text(seed=data.seed)
    return text_files(data.files)


def own_tokenizer(recipe: LanguageRecipe, tokenizer, train_docs: Corpus):
    """The student's own tokenizer (trained on the training documents, a user's file, or a student folder's
    when it differs from the teacher's ``tokenizer``), or None when the student uses the teacher's; refused
    with one message when the method does not fit it."""
    spec, own = recipe.student.tokenizer, None
    if spec is not None and spec.train is not None:
        own = train_tokenizer(train_docs, spec.train.vocab_size)
    elif spec is not None:
        own = load_tokenizer_file(spec.file, spec.eos)
    elif recipe.student.folder:
        theirs = load_tokenizer(resolve_model_folder(recipe.student.folder))
        own = theirs if tokenizer_hash(theirs) != tokenizer_hash(tokenizer) else None
    problem = recipe.method.own_tokenizer_problem(own is not None)
    if problem:
        whose = f"the student in {recipe.student.folder} has another tokenizer than the teacher: " if own is not None else ""
        raise ConfigError(f"{whose}{problem}.")
    return own


def shared_vocabulary(recipe: LanguageRecipe, tokenizer, teacher: nn.Module) -> int | None:
    """For a student folder with the teacher's tokenizer whose vocabulary is padded to another size (49,216 rows
    against 49,152, say): the ids both models have, to which the larger side's logits are cut; None when the
    sizes agree. Refused when the shared ids do not cover the tokenizer."""
    from transformers import AutoConfig

    folder = resolve_model_folder(recipe.student.folder)
    student_size = AutoConfig.from_pretrained(folder, local_files_only=True).vocab_size
    teacher_size = output_vocabulary(teacher)
    if student_size == teacher_size:
        return None
    shared = min(student_size, teacher_size)
    if shared < len(tokenizer):
        raise ConfigError(f"the student in {recipe.student.folder} has {student_size} token rows and the teacher "
                          f"{teacher_size}, but their tokenizer has {len(tokenizer)} ids: a model without a row for "
                          "every token cannot be distilled on its text. Give the student a row per token.")
    return shared


def prepare(recipe: LanguageRecipe) -> LanguageContext:
    """Teacher, tokenizers and the student's packed blocks (with the teacher's views of them for a student with
    its own tokenizer); a vocabulary padded beyond the shared ids is cut to them. The text is read first, so a
    malformed document is reported before the teacher loads."""
    train_docs, eval_docs = split_documents(load_corpus(recipe), recipe.data.heldout, recipe.data.seed)
    folder = resolve_model_folder(recipe.teacher.source)
    tokenizer = load_tokenizer(folder)
    own = own_tokenizer(recipe, tokenizer, train_docs)
    teacher = load_causal_lm(folder)
    student_vocabulary = shared_vocabulary(recipe, tokenizer, teacher) if recipe.student.folder and own is None else None
    # against a student with its own tokenizer, rows beyond the teacher tokenizer's ids are no tokens
    teacher_ids = len(tokenizer) if own is not None else student_vocabulary
    trimmed = teacher_ids is not None and teacher_ids < output_vocabulary(teacher)
    if trimmed:
        restrict_vocabulary(teacher, teacher_ids)
    student_tokenizer = own if own is not None else tokenizer
    d = recipe.data
    train = pack_text(student_tokenizer, train_docs, d.block_length, d.train_blocks, d.seed)
    held = pack_text(student_tokenizer, eval_docs, d.block_length, d.eval_blocks, d.seed + 1)
    shared = {"tokenizer": tokenizer_hash(tokenizer), "teacher": weights_hash(folder) + (f" first {teacher_ids} ids" if trimmed else "")}
    packing = f"eos={student_tokenizer.eos_token_id}" + (f" student tokenizer={tokenizer_hash(own)}" if own is not None else "")
    identity = {side: {**shared, "text": docs.digest(),
                       "packing": f"block_length={d.block_length} blocks={count} seed={seed} {packing}"}
                for side, docs, count, seed in (("train", train_docs, d.train_blocks, d.seed),
                                                ("eval", eval_docs, d.eval_blocks, d.seed + 1))}
    views = None
    if own is not None:
        views = {"train": teacher_views(tokenizer, train_docs, train), "eval": teacher_views(tokenizer, eval_docs, held)}
    return LanguageContext(folder, tokenizer, teacher, train.blocks, held.blocks, identity,
                           {"train": train.characters(), "eval": held.characters()}, own, views, student_vocabulary)


def _teacher_logits(teacher: nn.Module, stats: dict | None = None):
    """``ids -> logits`` of the frozen teacher; with ``stats``, also sums its next-token loss on the blocks."""

    def logits(ids: Tensor) -> Tensor:
        with torch.no_grad():
            out = teacher(input_ids=ids).logits
        if stats is not None:
            nll = torch.nn.functional.cross_entropy(out[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum")
            stats["nll"] = stats.get("nll", 0.0) + float(nll)
            stats["tokens"] = stats.get("tokens", 0) + ids[:, 1:].numel()
        return out

    return logits


def teacher_cache(context: LanguageContext, side: str, k: int) -> TopKCache:
    """The teacher's top-``k`` cache of one side's blocks, a cache entry made once per identity; the
    held-out side also records the teacher's own perplexity, measured in the same pass."""
    blocks = context.train_blocks if side == "train" else context.eval_blocks
    identity = context.identity[side]

    def build(staging: Path) -> dict:
        stats: dict = {}
        started = time.perf_counter()
        build_topk_cache(_teacher_logits(context.teacher, stats), blocks, staging, k=k, identity=identity,
                         temperature=TOPK_TEMPERATURE)
        stats["seconds"] = time.perf_counter() - started
        stats["tokens_per_second"] = blocks.numel() / stats["seconds"]
        stats["perplexity"] = math.exp(stats["nll"] / stats["tokens"])
        return stats

    entry = {"kind": "topk", **identity, "k": k, "blocks": blocks_hash(blocks)}
    folder = entry_folder("language", entry)
    cached_entry(folder, entry, build)
    return TopKCache(folder, identity=identity, blocks=blocks)


def teacher_stats(cache: TopKCache) -> dict:
    """What the teacher's pass over a cache's blocks measured (perplexity, tokens per second): its entry's info."""
    return json.loads((cache.folder / INFO_FILE).read_text())


def teacher_row(context: LanguageContext, stats: dict) -> dict:
    """The teacher's table row: its perplexity and bits per character on the held-out blocks its cache covers
    (``stats``); agreement and KL against itself are 1 and 0 by definition."""
    return {"model": "teacher", "parameters": parameter_count(context.teacher), "perplexity": stats["perplexity"],
            "bits_per_char": stats["nll"] / math.log(2) / float(context.characters["eval"].sum()),
            "agreement": 1.0, "kl": 0.0, "tokens": None}


def reference(context: LanguageContext) -> tuple[TopKCache | None, dict]:
    """What students are scored against: the teacher's held-out top-k cache (None for a student with its own
    tokenizer, whose tokens the teacher does not predict) and the teacher's row — for a student with its own
    tokenizer, the teacher's perplexity and bits per character on its tokens of the student's held-out blocks."""
    if context.views is None:
        cache = teacher_cache(context, "eval", EVAL_K)
        return cache, teacher_row(context, teacher_stats(cache))
    views = context.views["eval"]
    scores = evaluate_model(context.teacher, views.ids, characters=views.characters, lengths=views.lengths)
    return None, {"model": "teacher", "parameters": parameter_count(context.teacher), **scores, "tokens": None}


def make_student(recipe: LanguageRecipe, context: LanguageContext) -> nn.Module:
    """The recipe's student: a local folder, teacher layers, a cut of the teacher, or a size preset (initialised
    from ``train.seed``, so a seeded run repeats whatever the process drew before it)."""
    torch.manual_seed(recipe.train.seed)
    if recipe.student.folder:
        student = load_causal_lm(resolve_model_folder(recipe.student.folder), trainable=True)
        if context.student_vocabulary is not None:
            restrict_vocabulary(student, context.student_vocabulary)
        return student
    if (spec := recipe.student.prune) is not None:
        blocks = calibration_blocks(context.train_blocks, spec.tokens)
        return cut(context.teacher, blocks, spec.layers, spec.method, spec.intermediate, spec.heads)
    return build_student(context.teacher, recipe.student.preset, recipe.data.block_length, recipe.student.init_layers,
                         tokenizer=context.own_tokenizer)


def cross_tokenizer_loss(recipe: LanguageRecipe, context: LanguageContext) -> nn.Module:
    """The recipe's cross-tokenizer loss; ``mined`` gets its map of the teacher's ids onto the student's (a
    cache entry per pair of tokenizers)."""
    method = recipe.method
    extra = {}
    if method.loss == "mined":
        teacher_size = min(output_vocabulary(context.teacher), len(context.tokenizer))
        hashes = {"teacher_tokenizer": tokenizer_hash(context.tokenizer), "student_tokenizer": tokenizer_hash(context.own_tokenizer)}
        extra["vocabulary_map"] = min_edit_distance_map(context.tokenizer, context.own_tokenizer, teacher_size,
                                                        len(context.own_tokenizer), hashes)
    return LANGUAGE_LOSSES.build(method.loss, temperature=method.temperature, **method.options, **extra)


def teacher_generations(context: LanguageContext, prompt_tokens: int, count: int, seed: int) -> TensorDictDataset:
    """Sequence-level KD data (after Kim & Rush 2016, who take the teacher's beam-search output): ``count``
    training-block prompts continued by the teacher's samples at temperature 1 until its EOS or the block
    length, padded after EOS; a cache entry. Only the sampled tokens are trained on."""
    blocks = context.train_blocks[:count]

    def generate() -> tuple[dict[str, Tensor], dict]:
        torch.manual_seed(seed)
        out = []
        with progress_bar("teacher generations", len(blocks)) as bar:
            for start in range(0, len(blocks), 8):
                out.append(sample_continuations(context.teacher, blocks[start:start + 8, :prompt_tokens], blocks.shape[1]))
                bar.update(start + len(out[-1]))
        return {"input_ids": torch.cat(out)}, {}

    identity = {"kind": "seqkd", **context.identity["train"], "prompt": prompt_tokens, "count": count, "seed": seed,
                "blocks": blocks_hash(blocks), "ends": "eos"}
    ids = cached_tensors("language", identity, generate)[0]["input_ids"]
    mask = continuation_mask(ids, prompt_tokens, context.teacher.config.eos_token_id)
    return TensorDictDataset(input_ids=ids, row=torch.arange(len(ids)), loss_mask=mask)


def train_student(recipe: LanguageRecipe, context: LanguageContext, run: Run,
                  eval_cache: TopKCache | None) -> tuple[nn.Module, dict]:
    """Train the recipe's student; returns it and the run's facts (budget, timings, curve)."""
    method, config = recipe.method, recipe.train
    student = make_student(recipe, context)
    if method.sequence_kd:
        data = teacher_generations(context, method.prompt_tokens, method.generations, config.seed)
    elif method.cross_tokenizer:
        views = context.views["train"]
        data = TensorDictDataset(input_ids=context.train_blocks, teacher_ids=views.ids, aligned=views.aligned)
    else:
        data = TensorDictDataset(input_ids=context.train_blocks, row=torch.arange(len(context.train_blocks)))
    total = config.total_steps(len(data) // config.batch_size)
    if method.cross_tokenizer:
        objective = CrossTokenizerObjective(student, cross_tokenizer_loss(recipe, context), context.teacher,
                                            method.ce_weight)
    else:
        loss = signal = teacher = None
        if method.loss != "ce":
            loss = LANGUAGE_LOSSES.build(method.loss, temperature=method.temperature, ce_weight=method.ce_weight,
                                         **method.options)
            if recipe.signals.source == "cache":
                signal = teacher_cache(context, "train", recipe.signals.k)
            else:
                signal = live_signal(context.teacher)
        if method.on_policy or recipe.signals.source == "live":
            teacher = context.teacher
        objective = LanguageObjective(student, loss, signal, teacher, method.on_policy, method.prompt_tokens, total,
                                      internal_matching(recipe, student, context.teacher), method.chunk_tokens)

    def evaluator(model, accelerator):
        scores = evaluate_model(model, context.eval_blocks, eval_cache, context.characters["eval"])
        return {f"val_{k}": v for k, v in scores.items()}

    result = run.train(objective, data, config, TRAINING_FOLDER, evaluator)
    curve = [{"step": r["step"], "tokens": r["step"] * config.batch_size * (recipe.data.block_length - 1),
              "perplexity": r["val_perplexity"], "bits_per_char": r["val_bits_per_char"]}
             for r in result.history if "val_perplexity" in r]
    # the evaluator ran at the end
    scores = {k.removeprefix("val_"): v for k, v in result.final.items() if k.startswith("val_")}
    facts = {"scores": scores, "steps": result.steps, "train_tokens": total * config.batch_size * (recipe.data.block_length - 1),
             "seconds": result.seconds, "tokens_per_second": result.samples_per_second * recipe.data.block_length,
             "parameters": parameter_count(student), "curve": curve}
    return student, facts


def save_student(model: nn.Module, tokenizer, folder: Path) -> Path:
    """The student as a Hugging Face folder (safetensors, config, its tokenizer: the teacher's or its own)."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def run_language_recipe(recipe: LanguageRecipe, run: Run) -> tuple[list[dict], dict]:
    """Every stage; ``(rows, details)``: the teacher's and the student's held-out scores."""
    context = prepare(recipe)
    eval_cache, teacher = reference(context)
    student, facts = train_student(recipe, context, run, eval_cache)
    save_student(student, context.student_tokenizer, run.folder / STUDENT_FOLDER)
    scores = facts["scores"]
    rows = [teacher,
            {"model": f"student ({recipe.method.loss}{', on-policy' if recipe.method.on_policy else ''}"
                      f"{', sequence KD' if recipe.method.sequence_kd else ''}"
                      f"{f', own {len(context.own_tokenizer):,}-token tokenizer' if context.own_tokenizer is not None else ''})",
             "parameters": facts["parameters"], **scores, "tokens": facts["train_tokens"]}]
    details = {"training": facts, "teacher": teacher_stats(eval_cache) if eval_cache is not None else teacher,
               "own_tokenizer": context.own_tokenizer is not None,
               "eval_tokens": int(prediction_mask(context.eval_blocks).sum()),
               "samples": {"prompts": recipe.evaluate.prompts,
                           "teacher": samples(context.teacher, context.tokenizer, recipe.evaluate.prompts,
                                              recipe.evaluate.sample_tokens),
                           "student": samples(student, context.student_tokenizer, recipe.evaluate.prompts,
                                              recipe.evaluate.sample_tokens)}}
    return rows, details
