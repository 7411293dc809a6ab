"""Step-distillation methods ranked by their excess over the noise floor, with bootstrap intervals.

Runs recipes/steps/<prefix><method>.yaml unchanged except for the data set, the seeds and the
evaluation protocol: samples are scored against one half of the held-out split, the noise floor is
the other half against it (``evaluate.floor_from=test``), and every headline distance also gives
its excess over that floor (√(SW2² − floor²) on 2-D toys, √(FD − floor) on classifier features for
images) with a 95 % bootstrap interval. Seed s trains on teacher s % K (``--teachers K``), its own
pairs and its own student; the teacher is scored once per seed at 1, 2, 4, 8 and its full step count.
Per method the budget is recorded: student training steps, teacher evaluations spent on pairs or
targets, wall time. Issue 12's goals: the best 1-step student's excess within 1.5× the full-step
teacher's, the best 4-step student's within 1.1×; the guidance student (at the teacher's step count,
one evaluation per step) within the interval of the teacher's two-evaluation CFG at the same w. A run
folder that already holds the results of the same recipe is read instead of rerun.

    python benchmarks/steps.py --data checkerboard --seeds 0 1 2 --out benchmarks/results/steps_checkerboard.json
    python benchmarks/steps.py --data mnist --prefix mnist_ --teachers 2 --seeds 0 1 2 --samples 2000 \
        --methods progressive consistency ict reflow shortcut guidance dmd \
        --set evaluate.classifier.options.channels=[32,64,128] --set evaluate.classifier.train.lr=0.001 \
        --set evaluate.classifier.train.schedule=cosine --set evaluate.classifier.train.epochs=5 \
        --out benchmarks/results/steps_mnist_all.json    # a 98.8 % feature classifier, not the recipes' quick one
    python benchmarks/steps.py --merge A.json B.json --out C.json   # one table from runs of the same protocol
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import format_mean_std, mean_std, print_table, write_json

from distill.experiment import Run, get_task, load_recipe
from distill.experiment.recipe import dump_recipe

RECIPES = Path(__file__).parents[1] / "recipes" / "steps"
METHODS = ["progressive", "consistency", "ict", "reflow", "dmd", "shortcut"]
STUDENT_STEPS = (1, 2, 4)
GOALS = {1: 1.5, 4: 1.1}
TOYS = {"8gaussians", "checkerboard", "moons", "spiral", "rings", "swissroll"}


def overrides_for(args, data: str, seed: int, score_teacher: bool) -> list[str]:
    """The recipe overrides of one (data, seed) run: seeds, the evaluation protocol, no progress bars."""
    toy = [f"data.options.n_test={2 * args.samples}"] if data in TOYS else []  # two disjoint halves of `samples`
    return [f"data.name={data}", *toy, f"teacher.train.seed={seed % args.teachers}", f"train.seed={seed}",
            f"evaluate.seed={1000 + seed}", f"evaluate.samples={args.samples}", "evaluate.floor_from=test",
            f"evaluate.bootstrap={args.bootstrap}", "train.progress=false", "teacher.train.progress=false",
            "evaluate.classifier.train.progress=false", *args.set,
            *([] if score_teacher else ["evaluate.teacher_steps=[]"])]


def record(data: str, seed: int, method: str, row: dict, details: dict, student: bool) -> dict:
    """One scored row as a flat JSON record (the floor and, for students, the budget beside it)."""
    metrics = {k: v for k, v in row.items() if k not in ("model", "steps", "nfe", "ms_per_sample")}
    return {"data": data, "seed": seed, "method": method, "model": row["model"], "steps": row["steps"],
            "nfe": row["nfe"], **metrics, "ms_per_sample": row["ms_per_sample"],
            **{f"floor_{k}": v for k, v in details["floor"].items()}, "floor_spread": details.get("floor_spread"),
            "classifier_accuracy": details.get("classifier_accuracy"),
            **({f"budget_{k}": v for k, v in details["budget"].items()} if student else {})}


def finished(folder: Path, recipe) -> bool:
    """Whether ``folder`` holds the results of a finished run of exactly ``recipe``."""
    written = folder / "recipe.yaml"
    return (folder / "results.json").exists() and written.exists() and written.read_text() == dump_recipe(recipe)


def run_all(args) -> list[dict]:
    """Every (data, seed, method) run; JSON rewritten after each so an interrupted run keeps its rows."""
    task, records = get_task("steps"), []
    for data in args.data:
        for seed in args.seeds:
            scored_teachers = set()  # teacher specs already scored on this seed's draw
            for method in args.methods:
                path = RECIPES / f"{args.prefix}{method}.yaml"
                teacher_key = json.dumps(load_recipe(path).teacher.model_dump(mode="json"), sort_keys=True)
                if args.no_teacher_rows:
                    scored_teachers.add(teacher_key)
                recipe = load_recipe(path, overrides_for(args, data, seed, teacher_key not in scored_teachers))
                folder = args.work / data / method / f"seed{seed}"
                started = time.perf_counter()
                if not finished(folder, recipe):  # a finished run of this very recipe is read, not redone
                    task.run(recipe, Run(folder, recipe))  # as `distill run` does: results.json, report.md, plots
                outcome = json.loads((folder / "results.json").read_text())
                details = outcome["details"]
                for row in outcome["rows"][1:]:  # rows[0] is the noise floor
                    teacher = row["model"].startswith("teacher")
                    if teacher or row["steps"] in STUDENT_STEPS or method == "guidance":
                        w = recipe.teacher.cfg_scale
                        name = method if not teacher else "teacher" if w == 1 else f"teacher w={w:g}"
                        records.append(record(args.label or data, seed, name, row, details, student=not teacher))
                scored_teachers.add(teacher_key)
                print(f"{data} seed {seed} {method}: {time.perf_counter() - started:.0f} s, "
                      f"budget {details['budget']}", flush=True)
                write_json(args.out, {"command": command_of(args), "records": records})
    return records


def summarise(records: list[dict], full_steps: dict[str, int]) -> tuple[list[dict], list[dict]]:
    """Per (data, model, steps): mean ± std over seeds of the metrics, the excess, the excess ratio to
    the full-step teacher of the same seed and the budget; and per data set whether the best and the
    worst 1-step students' intervals are apart on each seed."""
    table = []
    for data in dict.fromkeys(r["data"] for r in records):
        mine = [r for r in records if r["data"] == data]
        guided = sorted({r["method"] for r in mine if r["method"].startswith("teacher w=")})
        teachers = {(r["seed"], r["method"]): r for r in mine
                    if r["method"].startswith("teacher") and r["steps"] == full_steps[data]}
        for method, steps in dict.fromkeys((r["method"], r["steps"]) for r in mine):
            group = [r for r in mine if r["method"] == method and r["steps"] == steps]
            # teachers against their own full-step row; the guidance student against the CFG teacher
            reference = method if method.startswith("teacher") else guided[0] if method == "guidance" else "teacher"
            ratios = [r["excess"] / teachers[(r["seed"], reference)]["excess"] for r in group
                      if teachers.get((r["seed"], reference), {}).get("excess", 0) > 0]
            summary = {"data": data, "method": method, "steps": steps, "nfe": group[0]["nfe"], "seeds": len(group)}
            for key in ("swd", "fd", "excess", "precision", "recall", "agreement", "budget_train_steps",
                        "budget_teacher_evaluations", "budget_seconds", "ms_per_sample"):
                if group[0].get(key) is not None:
                    summary[key] = mean_std([r[key] for r in group])
            summary["excess_ratio"] = mean_std(ratios) if len(ratios) == len(group) else None
            goal = GOALS.get(steps) if not method.startswith("teacher") and method != "guidance" else None
            summary["goal"] = goal
            table.append(summary)
    return table, separations(records)


def separations(records: list[dict]) -> list[dict]:
    """Per data set and seed: the 1-step students with the lowest and highest excess, and whether
    their 95 % intervals are apart (best's upper end below the worst's lower end)."""
    out = []
    for data, seed in dict.fromkeys((r["data"], r["seed"]) for r in records):
        one = [r for r in records if r["data"] == data and r["seed"] == seed and r["steps"] == 1
               and not r["method"].startswith("teacher") and r["method"] != "guidance" and r["excess"] == r["excess"]]
        if len(one) < 2:
            continue
        best, worst = min(one, key=lambda r: r["excess"]), max(one, key=lambda r: r["excess"])
        out.append({"data": data, "seed": seed, "best": best["method"], "worst": worst["method"],
                    "best_interval": [best["excess_low"], best["excess_high"]],
                    "worst_interval": [worst["excess_low"], worst["excess_high"]],
                    "apart": best["excess_high"] < worst["excess_low"]})
    return out


def merged(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """The records of several runs of this benchmark (teacher rows scored by more than one run, on the
    same seed's draw, kept once) and their commands."""
    records, seen, commands = [], set(), []
    for path in paths:
        payload = json.loads(path.read_text())
        commands.append(payload["command"])
        for r in payload["records"]:
            key = (r["data"], r["seed"], r["method"], r["steps"])
            if key not in seen:
                seen.add(key)
                records.append(r)
    return records, commands


def guidance_ties(records: list[dict]) -> list[dict]:
    """Per data set and seed: the guidance student (one evaluation per step) against the teacher's
    classifier-free guidance at the same w and step count (two evaluations per step); a tie when their
    95 % excess intervals overlap."""
    out = []
    for student in (r for r in records if r["method"] == "guidance"):
        teacher = next((r for r in records if r["data"] == student["data"] and r["seed"] == student["seed"]
                        and r["method"].startswith("teacher w=") and r["steps"] == student["steps"]), None)
        if teacher is None or student["excess"] != student["excess"]:
            continue
        overlap = student["excess_low"] <= teacher["excess_high"] and teacher["excess_low"] <= student["excess_high"]
        out.append({"data": student["data"], "seed": student["seed"], "steps": student["steps"],
                    "teacher": teacher["method"], "student_nfe": student["nfe"], "teacher_nfe": teacher["nfe"],
                    "student_interval": [student["excess_low"], student["excess_high"]],
                    "teacher_interval": [teacher["excess_low"], teacher["excess_high"]], "tie": overlap})
    return out


def print_summary(table: list[dict], apart: list[dict], ties: list[dict]) -> None:
    rows = []
    for r in table:
        headline = "swd" if "swd" in r else "fd"
        verdict = "" if r["goal"] is None or r["excess_ratio"] is None else (
            ("met" if r["excess_ratio"][0] <= r["goal"] else "missed") + f" (≤ {r['goal']}×)")
        rows.append([r["data"], r["method"], str(r["steps"]), str(r["nfe"]), format_mean_std(r[headline]), format_mean_std(r["excess"]),
                     format_mean_std(r["excess_ratio"], ".2f"), format_mean_std(r.get("budget_train_steps"), ".0f"),
                     format_mean_std(r.get("budget_teacher_evaluations"), ".3g"), format_mean_std(r.get("budget_seconds"), ".0f"), verdict])
    print_table(["data", "model", "steps", "NFE", "distance", "excess", "× teacher excess", "train steps",
                 "teacher evals", "seconds", "goal"], rows)
    for s in apart:
        print(f"{s['data']} seed {s['seed']}: best 1-step {s['best']} {s['best_interval']}, worst {s['worst']} "
              f"{s['worst_interval']}: {'apart' if s['apart'] else 'overlapping'}")
    for g in ties:
        print(f"{g['data']} seed {g['seed']}: guidance {g['steps']} steps ({g['student_nfe']} NFE) "
              f"{g['student_interval']} vs {g['teacher']} ({g['teacher_nfe']} NFE) {g['teacher_interval']}: "
              f"{'tie' if g['tie'] else 'apart'}")


def command_of(args) -> str:
    return "python benchmarks/steps.py " + " ".join(
        [f"--data {' '.join(args.data)}", f"--prefix {args.prefix}" if args.prefix else "",
         f"--teachers {args.teachers}", "--no-teacher-rows" if args.no_teacher_rows else "", f"--methods {' '.join(args.methods)}",
         f"--seeds {' '.join(map(str, args.seeds))}", f"--label {args.label}" if args.label else "", f"--samples {args.samples}", f"--bootstrap {args.bootstrap}",
         *(f"--set {s}" for s in args.set), f"--out {args.out}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["checkerboard"])
    parser.add_argument("--prefix", default="", help="recipe file prefix, e.g. mnist_")
    parser.add_argument("--teachers", type=int, default=3, help="seed s distils teacher s %% K")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--label", help="the data column's name for this run's rows (default: the data set's), so "
                                        "runs of two teachers on one data set stay apart when merged")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=10_000, help="per held-out half (and generated)")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-steps"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/steps_checkerboard.json"))
    parser.add_argument("--no-teacher-rows", action="store_true",
                        help="skip scoring the teachers (another run of this protocol already scored them)")
    parser.add_argument("--merge", type=Path, nargs="+", help="summarise these results files into --out instead")
    args = parser.parse_args()
    if args.teachers < 1:
        parser.error("--teachers must be ≥ 1")
    if args.label and len(args.data) > 1:
        parser.error("--label names one data set's rows; give one --data")
    torch.set_num_threads(args.threads)
    if args.merge:
        records, commands = merged(args.merge)
        command = " && ".join(commands)
    else:
        records, command = run_all(args), command_of(args)
    # the full step count is the largest scored; none when another run scored the teachers (--no-teacher-rows)
    full_steps = dict.fromkeys((r["data"] for r in records), None)
    for r in records:
        if r["method"].startswith("teacher"):
            full_steps[r["data"]] = max(r["steps"], full_steps[r["data"]] or 0)
    table, apart = summarise(records, full_steps)
    ties = guidance_ties(records)
    print_summary(table, apart, ties)
    write_json(args.out, {"command": command, "summary": table, "separation": apart, "guidance": ties,
                          "records": records})


if __name__ == "__main__":
    main()
