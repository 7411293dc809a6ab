"""Render the JSON written by the benchmark scripts as the Markdown tables of BENCHMARKS.md.

    python benchmarks/to_markdown.py > /tmp/tables.md
"""

from __future__ import annotations

import json
from pathlib import Path

from common import format_mean_std

RESULTS = Path(__file__).parent / "results"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def quickstart(data: dict) -> str:
    names = {"scratch": "scratch", "scratch_mixup": "scratch + mixup", "kd": "KD (T=4, α=0.9)", "dkd": "DKD + CE",
             "fitnet": "FitNet (fc2→conv3) + CE", "sp": "SP (fc2→conv3) + CE", "fm": "function matching (mixup, T=1)",
             "fm_transfer": "function matching + 50k unlabeled transfer set"}
    rows = [[names.get(r["row"], r["row"]), f"{r['acc_mean']:.2f} ± {r['acc_std']:.2f}", f"{r['ms_per_step']:.2f}",
             f"{r['step_ratio']:.2f}"] for r in data["rows"]]
    rows += [[name, "n/a", "", why] for name, why in data.get("not_applicable", {}).items()]
    return _table(["row", "test accuracy (%)", "ms / step", "× scratch step"], rows)


def methods(data: dict) -> str:
    rows = [[r["method"], f"{r['acc_mean']:.2f} ± {r['acc_std']:.2f}", f"{r['gain']:+.2f}", r["verdict"]] for r in data["rows"]]
    return _table(["method", "test accuracy (%)", "vs scratch", "verdict (±2σ)"], rows)


def step_cost(data: dict) -> str:
    return _table(["method", "ms / step", "× plain student step"], [[r["method"], f"{r['ms']:.3f}", f"{r['ratio']:.2f}"] for r in data["rows"]])


def engine_overhead(data: dict) -> str:
    rows = [[r["row"], f"{r['ms_per_step_mean']:.3f} ± {r['ms_per_step_std']:.3f}", f"{r['ratio']:.2f}",
             f"{r['extra_us_per_step']:+.0f}"] for r in data["rows"]]
    text = _table(["loop", "ms / step (whole runs)", "× hand-written loop", "µs / step extra"], rows)
    if "paired" in data:
        rows = [[r["row"], f"{r['ms_per_step_median']:.3f}", f"{r['ratio']:.2f}", f"{r['extra_us_per_step']:+.0f}"]
                for r in data["paired"]["rows"]]
        text += "\n\n" + _table(["loop", "ms / step (paired, median)", "× hand-written loop", "µs / step extra"], rows)
    return text


def hinton(data: dict) -> str:
    rows = []
    for name, values in data["errors"].items():
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        rows.append([name, f"{mean:.1f} ± {std:.1f}", ", ".join(map(str, values)), str(data["paper"][name])])
    return _table(["model", f"test errors / 10,000 ({data['epochs']} epochs)", "per seed", "paper"], rows)


def cross_sensor(data: dict) -> str:
    rows = [[r["subset"], r["variant"], f"{r['acc_mean']:.1f} ± {r['acc_std']:.1f}"] for r in data["rows"]]
    return _table(["student channels", "variant", "test accuracy (%) of 40"], rows)


def heterogeneous(data: dict) -> str:
    rows = [[r["pair"], f"{r['teacher_acc']:.2f}", r["method"], f"{r['acc_mean']:.2f} ± {r['acc_std']:.2f}"] for r in data["rows"]]
    return _table(["pair", "teacher (%)", "student", "test accuracy (%)"], rows)


def steps(data: dict) -> str:
    """Per model and step count: the headline distance, its excess over the floor, the excess as a
    multiple of the full-step teacher's, and the student's budget; then the floor and, per seed,
    whether the best and the worst 1-step students' intervals are apart."""
    summary = data["summary"]
    headline = "swd" if "swd" in summary[0] else "fd"
    extra = [k for k in ("precision", "recall", "agreement") if k in summary[0]]
    several = len({r["data"] for r in summary}) > 1  # runs of two teachers on one data set (steps.py --label)
    rows = []
    for r in summary:
        verdict = "" if r["goal"] is None or r["excess_ratio"] is None else (
            ("met" if r["excess_ratio"][0] <= r["goal"] else "missed") + f" (≤ {r['goal']}×)")
        rows.append([*([r["data"]] if several else []), r["method"], str(r["steps"]), str(r["nfe"]),
                     format_mean_std(r[headline], ".4f" if headline == "swd" else ".3f"), format_mean_std(r["excess"], ".4f"),
                     format_mean_std(r["excess_ratio"], ".2f"), *(format_mean_std(r.get(k), ".3f") for k in extra),
                     format_mean_std(r.get("budget_train_steps"), ".0f"), format_mean_std(r.get("budget_teacher_evaluations"), ".3g"),
                     format_mean_std(r.get("budget_seconds"), ".0f"), f"{r['ms_per_sample'][0]:.3f}", verdict])
    label = {"swd": "sliced W2", "fd": "Fréchet dist."}[headline]
    out = _table([*(["teacher run"] if several else []), "model", "steps", "NFE", label, "excess over floor", "× teacher excess", *extra, "train steps",
                  "teacher evals", "train s", "ms / sample", "goal"], rows)
    floors = {}
    for r in data["records"]:
        if r["method"] == "teacher":
            floors.setdefault(r["seed"], (r[f"floor_{headline}"], r["floor_spread"]))
    floor_text = "noise floor (two disjoint held-out halves) per seed: " + ", ".join(
        f"{f:.4g} (bootstrap sd {sd:.2g})" for f, sd in floors.values())
    accuracies = sorted({r["classifier_accuracy"] for r in data["records"] if r.get("classifier_accuracy")})
    if accuracies:  # a classifier retrained in a later invocation can differ in the last digit
        floor_text += "; feature classifier test accuracy " + " / ".join(f"{100 * a:.2f} %" for a in accuracies)
    apart = [f"seed {s['seed']}: best {s['best']} ({s['best_interval'][0]:.4f}–{s['best_interval'][1]:.4f}) vs "
             f"worst {s['worst']} ({s['worst_interval'][0]:.4f}–{s['worst_interval'][1]:.4f}): "
             f"{'apart' if s['apart'] else 'overlapping'}" for s in data.get("separation", [])]
    ties = [f"seed {g['seed']}: guidance {g['student_nfe']} NFE ({g['student_interval'][0]:.4f}–"
            f"{g['student_interval'][1]:.4f}) vs {g['teacher']} {g['teacher_nfe']} NFE ({g['teacher_interval'][0]:.4f}–"
            f"{g['teacher_interval'][1]:.4f}): {'tie' if g['tie'] else 'apart'}" for g in data.get("guidance", [])]
    return "\n\n".join([out, floor_text, *(["1-step excess intervals: " + "; ".join(apart)] if apart else []),
                          *(["guidance vs CFG teacher, excess intervals: " + "; ".join(ties)] if ties else [])])


def _mean_std(values: list[float], spec: str) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:{spec}} ± {std:{spec}}"


SCORE_COLUMNS = {"swd": ("sliced W2", ".3f"), "mmd": ("MMD²", ".4f"), "mode_distance": ("dist. to mode", ".3f"),
                 "mode_spread": ("per-mode std", ".3f"), "modes_covered": ("modes", ".1f"),
                 "fd": ("Fréchet dist.", ".2f"), "precision": ("precision", ".2f"), "recall": ("recall", ".2f"),
                 "agreement": ("label agreement", ".2f"), "out_of_range": ("pixels beyond ±1.1", ".3f"),
                 "chamfer": ("Chamfer", ".4f"), "psnr": ("held-out PSNR (dB)", ".2f"), "ssim": ("held-out SSIM", ".3f"),
                 "seconds": ("train s", ".1f"), "evaluations_per_step": ("prior evals / update", ".0f")}


def _score_rows(table: dict[str, list[dict]]) -> str:
    keys = [k for k in SCORE_COLUMNS if any(k in r for rows in table.values() for r in rows)]
    body = [[name, *(_mean_std([float(r[k]) for r in rows if r.get(k) is not None], SCORE_COLUMNS[k][1]) for k in keys)]
            for name, rows in table.items()]
    return _table(["object", *(SCORE_COLUMNS[k][0] for k in keys)], body)


def score_points(data: dict) -> str:
    return "\n\n".join(f"**{toy}**\n\n{_score_rows(table)}" for toy, table in data["results"].items())


def score_scenes(data: dict) -> str:
    def made(seconds: float) -> str:
        return "renders and prior from the cache" if seconds < 1 else f"renders and prior: {seconds:.0f} s"

    return "\n\n".join(f"**{mesh}** ({made(entry['prior_seconds'])})\n\n{_score_rows(entry['rows'])}"
                        for mesh, entry in data["results"].items())


def score_modes(data: dict) -> str:
    results = data["results"]
    rows = []
    for name, runs in results["guidances"].items():
        kept = sorted({r["object"] for r in runs if not r["blend"]})
        diversity = results["diversity"].get(name)
        rows.append([name, str(len(kept)), ", ".join(kept) or "–", f"{sum(r['blend'] for r in runs)}/{len(runs)}",
                     ", ".join(r["object"] for r in runs), _mean_std([r["chamfer"] for r in runs], ".4f"),
                     "–" if diversity is None else f"{diversity[0]:.4f} ± {diversity[1]:.4f}"])
    reference = ", ".join(f"{m} {c:.4f}" for m, c in results["reconstruction_chamfer"].items())
    return (f"Reconstruction Chamfer per mesh (blend threshold: 1.5× these): {reference}\n\n"
            + _table(["guidance", "distinct objects", "which", "blends", "nearest mesh per seed", "Chamfer (nearest)",
                      "diversity (Chamfer between seeds)"], rows))


def language(data: dict) -> str:
    rows = data["rows"]
    base_label = "scratch (CE)" if "scratch (CE)" in rows else next(iter(rows))
    base = rows[base_label]
    out = [["teacher (SmolLM2-135M-Instruct)", f"{data['teacher']['perplexity']:.1f}", "–", "100 %", "0", "–"]]
    for label, r in rows.items():
        (m, sd), verdict = r["perplexity"], "baseline"
        if base is not None and r is not base:
            (bm, bsd) = base["perplexity"]
            change = 100 * (m - bm) / bm
            apart = abs(m - bm) > 2 * max(sd, bsd)
            verdict = f"{change:+.1f} % ({'> 2σ' if apart else 'tie'})"
        out.append([label, f"{m:.1f} ± {sd:.1f}", verdict, "{:.1%} ± {:.1%}".format(*r["agreement"]),
                    "{:.3f} ± {:.3f}".format(*r["kl"]), "{:.0f} ± {:.0f}".format(*r["seconds"])])
    table = _table(["row", "held-out perplexity", f"vs {base_label}", "top-1 agreement", "KL(t‖s), top-128 bins",
                    "train s"], out)
    errors = _table(["k", "bytes / token", "mean tail mass", "KL(full ‖ top-k + uniform tail)"],
                    [[str(e["k"]), str(e["bytes_per_token"]), f"{e['tail_mass']:.3f}", f"{e['kl']:.4f}"]
                     for e in data["cache_error"]])
    speed = data["throughput"]
    steps = _table(["step (same student, same batch)", "tokens / s", "× cross-entropy step", "peak RSS (GB)"],
                   [[name.replace("_", " "), f"{speed[name]['tokens_per_second']:.0f}",
                     f"{speed[name]['seconds'] / speed['ce_step']['seconds']:.2f}", f"{speed[name]['peak_rss_gb']:.2f}"]
                    for name in ("ce_step", "cached_step", "live_step")])
    return "\n\n".join([table, errors, steps])


def dataset(data: dict) -> str:
    full = data["full"]
    rows, cross = [], []
    for ipc, per_ipc in data["ipcs"].items():
        sets = per_ipc["sets"]
        random = sets["random"]["convnet"]
        for name, result in sets.items():
            for augment in ("false", "true"):
                own = result["convnet"][augment]
                spread = (own["std"] ** 2 + random[augment]["std"] ** 2) ** 0.5
                gain = own["mean"] - random[augment]["mean"]
                verdict = "–" if name == "random" else f"{gain:+.1f} ({'> 2σ' if gain > 2 * spread else 'tie'})"
                speed = per_ipc["condensation"].get(name)
                rate = "–" if not speed or not speed[0]["iterations_per_second"] else \
                    f"{speed[0]['iterations']} it × {len(speed)} seeds, {speed[0]['iterations_per_second']:.2f} it/s"
                rows.append([ipc, name, "DSA" if augment == "true" else "none",
                             f"{own['mean']:.1f} ± {own['std']:.1f}", verdict, f"{full['mean'] - own['mean']:.1f}", rate])
        for name, result in per_ipc.get("cross", {}).items():
            cross.append([ipc, name, *[f"{result[a]['mean']:.1f} ± {result[a]['std']:.1f}" for a in result]])
    rows.append(["all", "full training set", "none", f"{full['mean']:.1f} ± {full['std']:.1f}", "–", "0", "–"])
    out = _table(["IPC", "set", "eval aug", "ConvNet acc (%)", "gain over random", "gap to full (pts)",
                  "condensation"], rows)
    if cross:
        out += "\n\n" + _table(["IPC", "set (seed 0)", "ConvNet (%)", "MLP (%)", "ResNet (%)"], cross)
    return out


RENDERERS = {"quickstart.json": quickstart, "methods_mnist1d.json": methods, "methods_mnist.json": methods,
             "steps_checkerboard.json": steps, "steps_8gaussians.json": steps, "steps_mnist_all.json": steps, "steps_mnist_dmd800.json": steps,
             "steps_diffusers.json": steps, "step_cost.json": step_cost, "engine_overhead.json": engine_overhead,
             "hinton_mnist.json": hinton, "cross_sensor.json": cross_sensor, "heterogeneous.json": heterogeneous,
             "score_particles.json": score_points, "score_images.json": score_points,
             "score_scenes_meshes_exact.json": score_scenes, "score_scenes_meshes_trained.json": score_scenes,
             "score_scenes_modes_exact.json": score_modes, "score_scenes_modes_trained.json": score_modes,
             "language.json": language, "language_internals.json": language, "dataset_ipc1.json": dataset,
             "dataset_ipc10.json": dataset}


def main() -> None:
    for name, render in RENDERERS.items():
        path = RESULTS / name
        if path.exists():
            data = json.loads(path.read_text())
            print(f"### {name}\n\n`{data.get('command', '')}` — {data.get('machine', '')}\n\n{render(data)}\n")


if __name__ == "__main__":
    main()
