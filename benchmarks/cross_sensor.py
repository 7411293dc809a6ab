"""Cross-sensor distillation: a teacher on every channel, students that see a channel subset.

BasicMotions (6 motion channels) or, with ``--dataset japanese_vowels``, the harder Japanese Vowels
(12 LPC channels, 9 speakers; 270 / 370 utterances). For each subset and seed:
the student from scratch, distilled with KD, with KD + MMD feature alignment, and
KD + MMD with every view Euclidean-aligned (teacher retrained on aligned data,
scratch baseline re-measured on aligned data), and function matching (KD at T = 1, both views
blended by the same mixup). Same student, optimizer and steps.

    python benchmarks/cross_sensor.py --seeds 0 1 2 3 4
    python benchmarks/cross_sensor.py --dataset japanese_vowels --seeds 0 1 2 --out benchmarks/results/cross_sensor_vowels.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.data import student_views
from distill.experiment import Run, load_recipe
from distill.tasks.classification.run import load_recipe_data, obtain_teacher, train_distilled, train_scratch

RECIPE = Path(__file__).parents[1] / "recipes" / "sensors" / "basicmotions_accel.yaml"
SUBSETS = {
    "basicmotions": {"accelerometer [0,1,2]": [0, 1, 2], "gyroscope [3,4,5]": [3, 4, 5], "acc_x only [0]": [0]},
    "japanese_vowels": {"lpc 1-3 [0,1,2]": [0, 1, 2], "lpc 7-12 [6..11]": [6, 7, 8, 9, 10, 11], "lpc 1 only [0]": [0]},
}
KD = {"student": "output", "teacher": "output", "loss": "kd", "options": {"temperature": 4.0, "alpha": 0.5}}
MMD = {"student": "conv3", "teacher": "conv3", "loss": "mmd", "weight": 1.0}
FM = {"student": "output", "teacher": "output", "loss": "kd", "options": {"temperature": 1.0, "alpha": 1.0}}
#: name → (pairs, Euclidean-aligned views, augmentation); function matching blends both views alike
VARIANTS = {"kd": ([KD], False, "none"), "kd+mmd": ([KD, MMD], False, "none"),
            "kd+mmd, aligned": ([KD, MMD], True, "none"), "function matching": ([FM], False, "mixup")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(SUBSETS), default="basicmotions")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every run (quick checks)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-cross-sensor"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cross_sensor.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    def recipe(seed: int, channels: list[int], aligned: bool, pairs: list[dict] | None = None, augment: str = "none"):
        loaded = load_recipe(RECIPE, [f"data.name={args.dataset}", f"train.seed={seed}", "train.progress=false",
                                      "teacher.train.progress=false",
                                      f"data.options.align={str(aligned).lower()}", f"data.student_align={str(aligned).lower()}",
                                      *args.set])
        loaded.data.student_channels = channels
        if pairs is not None:
            loaded.distill = loaded.distill.model_validate({**loaded.distill.model_dump(), "pairs": pairs,
                                                            "augment": augment})
        return loaded

    results: dict[tuple[str, str], list[float]] = {}
    teachers = {}
    for aligned in (False, True):
        base = recipe(args.seeds[0], [0, 1, 2], aligned)
        splits = load_recipe_data(base)
        teachers[aligned] = (splits, *obtain_teacher(base, splits, Run(args.work / f"teacher_aligned{aligned}", base)))
    for subset, channels in SUBSETS[args.dataset].items():
        for seed in args.seeds:
            for aligned in (False, True):
                splits, teacher, _ = teachers[aligned]
                views = student_views(splits, channels, aligned)
                scratch_name = "scratch, aligned" if aligned else "scratch"
                spec = recipe(seed, channels, aligned)
                run = Run(args.work / subset / scratch_name / f"s{seed}", spec)
                _, row = train_scratch(spec, views.student, run, "none")
                results.setdefault((subset, scratch_name), []).append(100 * row.acc)
            for variant, (pairs, aligned, augment) in VARIANTS.items():
                splits, teacher, _ = teachers[aligned]
                views = student_views(splits, channels, aligned)
                spec = recipe(seed, channels, aligned, pairs, augment)
                run = Run(args.work / subset / variant / f"s{seed}", spec)
                _, row = train_distilled(spec, views.student, teacher, run, views=views)
                results.setdefault((subset, variant), []).append(100 * row.acc)
            print(f"seed {seed} {subset}: " + ", ".join(f"{v}={r[-1]:.1f}" for (s, v), r in results.items() if s == subset), flush=True)

    rows, table = [], []
    for (subset, variant), accs in results.items():
        mean, std = mean_std(accs)
        rows.append([subset, variant, f"{mean:.1f} ± {std:.1f}"])
        table.append({"subset": subset, "variant": variant, "acc_mean": mean, "acc_std": std, "accs": accs})
    teacher_accs = {f"aligned={k}": round(100 * v[2][0].acc, 2) for k, v in teachers.items()}
    print(f"teacher (all channels): {teacher_accs}")
    print_table(["student channels", "variant", "test acc (%)"], rows)
    sets = "".join(f" --set {item}" for item in args.set)
    command = f"python benchmarks/cross_sensor.py --dataset {args.dataset} --seeds {' '.join(map(str, args.seeds))}{sets}"
    write_json(args.out, {"command": command, "teachers": teacher_accs, "test_size": len(teachers[False][0].test),
                          "rows": table})


if __name__ == "__main__":
    main()
