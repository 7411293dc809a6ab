"""Stages of a ``language`` run: text and teacher, the teacher's top-k caches, the student's training,
evaluation on held-out text, samples and the Hugging Face student folder."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
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
    pack_blocks,
    shakespeare_plays,
    split_documents,
    text_files,
)
from distill.tasks.language.methods import LANGUAGE_LOSSES
from distill.tasks.language.methods.internals import internal_matching
from distill.tasks.language.methods.prune import calibration_blocks, cut
from distill.tasks.language.metrics import evaluate_model, samples
from distill.tasks.language.models import (
    build_student,
    load_causal_lm,
    load_tokenizer,
    resolve_model_folder,
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
from distill.tasks.language.recipe import TOPK_TEMPERATURE, LanguageRecipe

STUDENT_FOLDER = "student"  # the trained model alone, as save_pretrained writes it
TRAINING_FOLDER = "training"  # the training stage's checkpoints and per-step logs
EVAL_K = 128  # the held-out cache: agreement and KL are scored against the teacher's top-128


@dataclass
class LanguageContext:
    """The frozen teacher, its tokenizer and the packed text of both sides."""

    teacher_folder: Path
    tokenizer: object
    teacher: nn.Module
    train_blocks: Tensor
    eval_blocks: Tensor
    identity: dict[str, dict[str, str]]  # side → {tokenizer, text, packing, teacher}


def load_corpus(recipe: LanguageRecipe) -> Corpus:
    """The recipe's documents."""
    data = recipe.data
    if data.corpus == "shakespeare":
        return shakespeare_plays()
    if data.corpus == "generated":
        return generated_text(seed=data.seed)
    return text_files(data.files)


def prepare(recipe: LanguageRecipe) -> LanguageContext:
    """Teacher, tokenizer and packed blocks; refuses a student tokenizer that differs from the teacher's.
    The text is read first, so a malformed document is reported before the teacher loads."""
    train_docs, eval_docs = split_documents(load_corpus(recipe), recipe.data.heldout, recipe.data.seed)
    folder = resolve_model_folder(recipe.teacher.source)
    tokenizer = load_tokenizer(folder)
    if recipe.student.folder:
        own = load_tokenizer(resolve_model_folder(recipe.student.folder))
        if tokenizer_hash(own) != tokenizer_hash(tokenizer):
            raise ConfigError(
                f"the student in {recipe.student.folder} has another tokenizer than the teacher. Token-level losses "
                "compare distributions over one vocabulary, so they need the teacher's tokenizer; distill does not "
                "implement a cross-tokenizer method (e.g. ULD, Boizard et al. 2024). Use a student with the teacher's "
                "tokenizer, or method.loss: ce / method.sequence_kd (text-level distillation).")
    teacher = load_causal_lm(folder)
    d = recipe.data
    train = pack_blocks(tokenizer, train_docs, d.block_length, d.train_blocks, d.seed)
    held = pack_blocks(tokenizer, eval_docs, d.block_length, d.eval_blocks, d.seed + 1)
    shared = {"tokenizer": tokenizer_hash(tokenizer), "teacher": weights_hash(folder)}
    identity = {side: {**shared, "text": docs.digest(),
                       "packing": f"block_length={d.block_length} blocks={count} seed={seed} eos={tokenizer.eos_token_id}"}
                for side, docs, count, seed in (("train", train_docs, d.train_blocks, d.seed),
                                                ("eval", eval_docs, d.eval_blocks, d.seed + 1))}
    return LanguageContext(folder, tokenizer, teacher, train, held, identity)


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
    """The teacher's table row: its perplexity on the blocks its cache covers (``stats``); agreement and KL
    against itself are 1 and 0 by definition."""
    return {"model": "teacher", "parameters": parameter_count(context.teacher), "perplexity": stats["perplexity"],
            "agreement": 1.0, "kl": 0.0, "tokens": None}


def make_student(recipe: LanguageRecipe, context: LanguageContext) -> nn.Module:
    """The recipe's student: a local folder, teacher layers, a cut of the teacher, or a size preset (initialised
    from ``train.seed``, so a seeded run repeats whatever the process drew before it)."""
    torch.manual_seed(recipe.train.seed)
    if recipe.student.folder:
        return load_causal_lm(resolve_model_folder(recipe.student.folder), trainable=True)
    if (spec := recipe.student.prune) is not None:
        blocks = calibration_blocks(context.train_blocks, spec.tokens)
        return cut(context.teacher, blocks, spec.layers, spec.method, spec.intermediate, spec.heads)
    return build_student(context.teacher, recipe.student.preset, recipe.data.block_length, recipe.student.init_layers)


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
                  eval_cache: TopKCache) -> tuple[nn.Module, dict]:
    """Train the recipe's student; returns it and the run's facts (budget, timings, curve)."""
    method, config = recipe.method, recipe.train
    student = make_student(recipe, context)
    if method.sequence_kd:
        data = teacher_generations(context, method.prompt_tokens, method.generations, config.seed)
    else:
        data = TensorDictDataset(input_ids=context.train_blocks, row=torch.arange(len(context.train_blocks)))
    total = config.total_steps(len(data) // config.batch_size)
    loss = signal = teacher = None
    if method.loss != "ce":
        loss = LANGUAGE_LOSSES.build(method.loss, temperature=method.temperature, ce_weight=method.ce_weight, **method.options)
        if recipe.signals.source == "cache":
            signal = teacher_cache(context, "train", recipe.signals.k)
        else:
            signal = live_signal(context.teacher)
    if method.on_policy or recipe.signals.source == "live":
        teacher = context.teacher
    objective = LanguageObjective(student, loss, signal, teacher, method.on_policy, method.prompt_tokens, total,
                                  internal_matching(recipe, student, context.teacher), method.chunk_tokens)

    def evaluator(model, accelerator):
        return {f"val_{k}": v for k, v in evaluate_model(model, context.eval_blocks, eval_cache).items()}

    result = run.train(objective, data, config, TRAINING_FOLDER, evaluator)
    curve = [{"step": r["step"], "tokens": r["step"] * config.batch_size * (recipe.data.block_length - 1),
              "perplexity": r["val_perplexity"]} for r in result.history if "val_perplexity" in r]
    scores = {k: result.final[f"val_{k}"] for k in ("perplexity", "agreement", "kl")}  # the evaluator ran at the end
    facts = {"scores": scores, "steps": result.steps, "train_tokens": total * config.batch_size * (recipe.data.block_length - 1),
             "seconds": result.seconds, "tokens_per_second": result.samples_per_second * recipe.data.block_length,
             "parameters": parameter_count(student), "curve": curve}
    return student, facts


def save_student(model: nn.Module, tokenizer, folder: Path) -> Path:
    """The student as a Hugging Face folder (safetensors, config, the teacher's tokenizer)."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def run_language_recipe(recipe: LanguageRecipe, run: Run) -> tuple[list[dict], dict]:
    """Every stage; ``(rows, details)``: the teacher's and the student's held-out scores."""
    context = prepare(recipe)
    eval_cache = teacher_cache(context, "eval", EVAL_K)
    stats = teacher_stats(eval_cache)
    student, facts = train_student(recipe, context, run, eval_cache)
    save_student(student, context.tokenizer, run.folder / STUDENT_FOLDER)
    scores = facts["scores"]
    rows = [teacher_row(context, stats),
            {"model": f"student ({recipe.method.loss}{', on-policy' if recipe.method.on_policy else ''}"
                      f"{', sequence KD' if recipe.method.sequence_kd else ''})",
             "parameters": facts["parameters"], **scores, "tokens": facts["train_tokens"]}]
    details = {"training": facts, "teacher": stats, "eval_tokens": int(prediction_mask(context.eval_blocks).sum()),
               "samples": {"prompts": recipe.evaluate.prompts,
                           "teacher": samples(context.teacher, context.tokenizer, recipe.evaluate.prompts,
                                              recipe.evaluate.sample_tokens),
                           "student": samples(student, context.tokenizer, recipe.evaluate.prompts,
                                              recipe.evaluate.sample_tokens)}}
    return rows, details
