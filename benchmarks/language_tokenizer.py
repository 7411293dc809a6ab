"""A student with its own tokenizer: SmolLM2-135M-Instruct into the tiny student with an 8,000-token BPE.

The student's tokenizer is a byte-level BPE trained on the training plays
(``recipes/language/smollm2_own_tokenizer.yaml``). Every row trains the same architecture from the same
initialisation seed for the same number of steps on the same blocks of its own tokens (equal token
budget), and is scored on held-out plays in bits per character, since perplexities per token of two
tokenizers do not compare. Rows: cross-entropy only (no teacher); ULD + CE (Boizard et al. 2024); MinED
token alignment + CE (FuseLLM, Wan et al. 2024); and, for scale, the same student with the teacher's
49,152-token tokenizer trained by cross-entropy at the same number of steps (its blocks hold more
characters). Also reported: the share of student positions aligned with a teacher position, the teacher's
bits per character on the same held-out characters, tokens per second of training. Mean ± std over seeds.

    python benchmarks/language_tokenizer.py --seeds 0 1 2
    python benchmarks/language_tokenizer.py --seeds 0 --steps 2 --set data.train_blocks=16 --set data.eval_blocks=4   # smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from common import machine, mean_std, print_table, write_json

from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.tasks.language.report import plot_curves
from distill.tasks.language.run import prepare, reference, train_student

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "language"
OWN = RECIPES / "smollm2_own_tokenizer.yaml"
#: row → (recipe, overrides)
ROWS = {
    "own 8k tokenizer, CE only": (OWN, ["method.loss=ce", "method.ce_weight=0.0"]),
    "own 8k tokenizer, ULD + CE": (OWN, []),
    "own 8k tokenizer, MinED + CE": (OWN, ["method.loss=mined"]),
    "teacher's tokenizer, CE only": (RECIPES / "smollm2_shakespeare.yaml", ["method.loss=ce"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), help="row names (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every row (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/language_tokenizer.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = [*args.set, "train.progress=false"] + ([f"train.steps={args.steps}"] if args.steps else [])
    started = time.perf_counter()
    contexts, teachers, results, curves = {}, {}, {}, {}
    for label in args.rows:
        path, overrides = ROWS[label]
        per_seed = []
        for seed in args.seeds:
            recipe = load_recipe(path, [*common, *overrides, f"train.seed={seed}"])
            if path not in contexts:  # the text, tokenizers and teacher views are the same for every row of a recipe
                contexts[path] = prepare(recipe)
                teachers[path] = reference(contexts[path])
            context = contexts[path]
            eval_cache, teacher = teachers[path]
            run = Run(Path("runs/bench_language_tokenizer") / f"{label.replace(' ', '_').replace(',', '')}_s{seed}", recipe)
            _, facts = train_student(recipe, context, run, eval_cache)
            scores = facts["scores"]
            per_seed.append({**scores, "seconds": facts["seconds"], "tokens_per_second": facts["tokens_per_second"],
                             "train_tokens": facts["train_tokens"]})
            if seed == args.seeds[0]:
                curves[label] = facts["curve"]
            print(f"{label} seed {seed}: {scores['bits_per_char']:.3f} bits/char, ppl {scores['perplexity']:.1f} "
                  f"({facts['seconds']:.0f} s, {facts['tokens_per_second']:.0f} tokens/s)", flush=True)
        views = context.views["train"] if context.views is not None else None
        results[label] = {"seeds": per_seed, "parameters": facts["parameters"], "train_tokens": facts["train_tokens"],
                          "vocabulary": len(context.student_tokenizer), "teacher": teacher,
                          "train_characters": int(context.characters["train"].sum()),
                          "aligned_share": None if views is None else float((views.aligned[:, :-1] >= 0).float().mean()),
                          **{m: mean_std([r[m] for r in per_seed])
                             for m in ("bits_per_char", "perplexity", "tokens_per_second", "seconds")}}
    header = ["row", "vocabulary", "params", "bits/char", "ppl (own tokens)", "tokens/s", "aligned"]
    table = []
    for label, r in results.items():
        aligned = "–" if r["aligned_share"] is None else f"{r['aligned_share']:.0%}"
        table.append([label, f"{r['vocabulary']:,}", f"{r['parameters'] / 1e6:.2f}M", "{:.3f} ± {:.3f}".format(*r["bits_per_char"]),
                      "{:.1f} ± {:.1f}".format(*r["perplexity"]), "{:.0f}".format(r["tokens_per_second"][0]), aligned])
    for path, (_, teacher) in teachers.items():
        table.append([f"teacher on {path.stem}'s held-out blocks", f"{len(contexts[path].tokenizer):,}",
                      f"{teacher['parameters'] / 1e6:.0f}M", f"{teacher['bits_per_char']:.3f}",
                      f"{teacher['perplexity']:.1f}", "–", "–"])
    print_table(header, table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, args.out.with_suffix(".png"), key="bits_per_char")
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "machine": machine(), "threads": args.threads,
                          "seeds": args.seeds, "overrides": common, "rows": results, "curves": curves,
                          "seconds": time.perf_counter() - started})


if __name__ == "__main__":
    main()
