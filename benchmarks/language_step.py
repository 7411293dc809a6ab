"""Where a live language-distillation step's time goes, against its floor: the teacher's forward plus a
cross-entropy step of the student.

The language recipe's teacher (SmolLM2-135M-Instruct) and ``tiny`` student, one batch of the recipe's
blocks, float32 on the CPU. Timed per optimizer step (forward, backward, AdamW): the teacher's forward
alone (no autograd), a cross-entropy step, and live-teacher steps with forward KL and GKD's JSD(β = 0.5),
each with the closed-form gradient of ``distill.losses.closed_form`` and, for comparison, through
autograd (the path every token loss took before; TRL's GKD step computes JSD the same way). The kinds
are timed in turns, one step each, the first rotating, so a shared machine's drift falls on all alike;
medians over ``--steps`` turns. The floor is ``teacher forward + cross-entropy step``.

    python benchmarks/language_step.py --steps 12 --out benchmarks/results/language_step.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import print_table, write_json

from distill.experiment import load_recipe
from distill.losses import LOSSES, closed_form

RECIPE = Path(__file__).parents[1] / "recipes" / "language" / "smollm2_shakespeare.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed turns (each kind one step per turn)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/language_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from distill.tasks.language.objectives import LanguageObjective, live_signal
    from distill.tasks.language.run import make_student, prepare

    recipe = load_recipe(RECIPE)
    context = prepare(recipe)
    teacher = context.teacher.eval()
    batch = {"input_ids": context.train_blocks[:args.batch], "row": torch.arange(args.batch)}
    closed_form_applies = closed_form.applies

    def step_of(objective):
        optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-3)

        def step():
            objective(batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    def teacher_forward():
        with torch.no_grad():
            teacher(input_ids=batch["input_ids"])

    def autograd(step):  # the same step with the closed form switched off
        def run():
            closed_form.applies = lambda *args: False
            try:
                step()
            finally:
                closed_form.applies = closed_form_applies
        return run

    def live(loss):
        return step_of(LanguageObjective(make_student(recipe, context), loss, live_signal(teacher), teacher))

    jsd = LOSSES.build("jsd", beta=0.5)
    kinds = {"teacher forward": teacher_forward,
             "cross-entropy step": step_of(LanguageObjective(make_student(recipe, context))),
             "live forward KL, closed form": live(LOSSES.build("forward_kl")),
             "live forward KL, autograd": autograd(live(LOSSES.build("forward_kl"))),
             "live JSD(0.5), closed form": live(jsd),
             "live JSD(0.5), autograd": autograd(live(LOSSES.build("jsd", beta=0.5)))}
    for run in kinds.values():  # one warm-up step each
        run()
    seconds = {name: [] for name in kinds}
    names = list(kinds)
    for turn in range(args.steps):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            started = time.perf_counter()
            kinds[name]()
            seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    floor = median["teacher forward"] + median["cross-entropy step"]
    rows = [[name, f"{median[name]:.3f}", f"{median[name] / floor:.2f}",
             f"{median[name] / median['cross-entropy step']:.2f}"] for name in names]
    print_table(["step", "s (median)", "× floor (teacher fwd + CE step)", "× CE step"], rows)
    for loss in ("forward KL", "JSD(0.5)"):
        ratio = median[f"live {loss}, autograd"] / median[f"live {loss}, closed form"]
        print(f"{loss}: autograd step ÷ closed-form step = {ratio:.2f}")
    write_json(args.out, {"args": {**vars(args), "out": str(args.out)}, "tokens_per_step": batch["input_ids"].numel(),
                          "seconds": seconds, "median": median, "floor": floor})


if __name__ == "__main__":
    main()
