"""Issue 27's last goal: a few-step student distilled from a diffusers folder loads in diffusers, and the
images diffusers samples from it score what ``distill eval`` reports for the same run.

    python benchmarks/diffusers_student_check.py runs/bench-steps-diffusers/digits/progressive/seed0 --steps 4 \
        --out benchmarks/results/diffusers_student_check.json

Every row is scored by the run's own scorer (held-out half A, metric classifier, noise floor, bootstrap — what
``distill eval RUN`` builds from the run folder): distill's sampler restored from ``students.safetensors``
(``distill eval``'s row); the student's diffusers folder (``RUN/diffusers/<steps>_steps``) loaded with
``DDIMPipeline.from_pretrained`` and its scheduler loop run on the very same noise (the largest pixel difference
between the two sample sets beside it, distill's clamped to the pipeline's [−1, 1]: a teacher without
``clip_sample`` leaves distill's samples unclamped); and the pipeline called as a user would, on its own noise from
``--seed`` (so it differs from distill's row by the sampling noise alone).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import print_table, write_json

from distill.diffusion.diffusers_student import SAMPLER_NOTE
from distill.experiment import get_task, load_run_recipe
from distill.tasks.steps.metrics import make_scorer
from distill.tasks.steps.run import DIFFUSERS_FOLDER

METRICS = ("fd", "excess", "excess_low", "excess_high", "precision", "recall")


@torch.no_grad()
def scheduler_loop(pipeline, noise: torch.Tensor, steps: int, clipped: bool) -> torch.Tensor:
    """``DDIMPipeline.__call__``'s loop on given noise, as images in [−1, 1]."""
    pipeline.scheduler.set_timesteps(steps)
    x = noise * pipeline.scheduler.init_noise_sigma
    for t in pipeline.scheduler.timesteps:
        x = pipeline.scheduler.step(pipeline.unet(x, t).sample, t, x, eta=0.0,
                                    use_clipped_model_output=clipped).prev_sample
    return (x / 2 + 0.5).clamp(0, 1) * 2 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished steps run of a diffusers teacher")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the generator seed of the plain pipeline call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diffusers_student_check.json"))
    args = parser.parse_args()
    import diffusers

    torch.set_num_threads(args.threads)
    recipe = load_run_recipe(args.run)
    generators, splits, run = get_task("steps")._generators(args.run, recipe, None)  # what `distill eval` restores
    scorer = make_scorer(recipe, splits, run)
    folder = args.run / DIFFUSERS_FOLDER / f"{args.steps}_steps"
    note = json.loads((folder / SAMPLER_NOTE).read_text())
    if note["pipeline"] != "DDIMPipeline":
        parser.error(f"{folder} is a {note['sampler']} student ({note['call']}); give a run whose student is a DDIM "
                     "sampler (progressive, or reflow from a DDPM-family teacher)")
    clipped = "use_clipped_model_output=True" in note["call"]
    pipeline = diffusers.DDIMPipeline.from_pretrained(folder)
    distill_row = scorer.run("distill eval", generators[args.steps], args.steps)
    same_noise = scheduler_loop(pipeline, scorer.noise, args.steps, clipped)
    called = pipeline(batch_size=len(scorer.noise), generator=torch.Generator().manual_seed(args.seed),
                      num_inference_steps=args.steps, eta=0.0, use_clipped_model_output=clipped,
                      output_type="pt").images * 2 - 1
    rows = {"distill eval (students.safetensors, distill's DDIM)": distill_row.metrics,
            "diffusers folder, DDIMPipeline loop on the same noise": scorer.score(same_noise),
            f"DDIMPipeline(...)(generator seed {args.seed}), its own noise": scorer.score(called)}
    difference = (same_noise - distill_row.samples.clamp(-1, 1)).abs().max().item()  # pipelines clamp their images
    print_table(["sampler", *METRICS], [[name, *(f"{m[k]:.4f}" for k in METRICS)] for name, m in rows.items()])
    print(f"floor FD {scorer.floor['fd']:.4f} (bootstrap sd {scorer.floor.get('floor_spread', float('nan')):.4f}); "
          f"max |distill − diffusers| pixel difference on the same noise: {difference:.2e}; note: {note['call']}")
    write_json(args.out, {"run": str(args.run), "steps": args.steps, "folder": str(folder), "note": note,
                          "floor": scorer.floor, "max_abs_difference_same_noise": difference,
                          "rows": [{"sampler": name, **m} for name, m in rows.items()]})


if __name__ == "__main__":
    main()
