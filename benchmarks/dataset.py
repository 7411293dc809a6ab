"""Dataset distillation on MNIST: DM, DC and MTT beside a random real subset, herding and the full data.

Every set — synthetic or baseline — is scored by the same protocol (``distill.tasks.dataset.run.protocol``):
fresh networks trained from random initialisations with one fixed SGD schedule, with and without DSA
augmentation at evaluation, scored once at the end on the MNIST test split (no checkpoint chosen on it),
mean ± std over every network of every distillation seed. Cross-architecture (MLP, ResNet) for the sets
named in ``--cross``. The full-data ConvNet (herding's features) is trained once per run.

    python benchmarks/dataset.py --ipc 1 10 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from common import machine, print_table, write_json

from distill.engine.cache import content_hash
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.taps import tapped
from distill.tasks.dataset.augment import DSA
from distill.tasks.dataset.metrics import evaluate_set, herding_subset, random_subset
from distill.tasks.dataset.recipe import ARCHITECTURES
from distill.tasks.dataset.report import plot_accuracy_vs_ipc, plot_grid
from distill.tasks.dataset.run import (
    BASELINE_SEED,
    condense_seed,
    expert_trajectories,
    full_data_teacher,
    load_real,
    network_factory,
    pooled,
    protocol,
    ranking,
    stage_identity,
)

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "dataset"
METHODS = {1: ["dm", "dc", "mtt"], 10: ["dm", "dc"]}


def recipe_for(method: str, ipc: int, overrides: list[str]):
    """The bundled recipe of ``method`` at ``ipc`` (or the method's IPC-10 recipe moved to ``ipc``)."""
    path = RECIPES / f"{method}_mnist_ipc{ipc}.yaml"
    extra = [] if path.exists() else [f"method.ipc={ipc}"]
    if not path.exists():
        path = RECIPES / f"{method}_mnist_ipc10.yaml"
    return load_recipe(path, [*extra, *overrides, "progress=false"])


def scoped(recipe, architectures: list[str]):
    """``recipe`` whose evaluation trains only ``architectures``."""
    return recipe.model_copy(update={"evaluate": recipe.evaluate.model_copy(update={"architectures": architectures})})


def gain_row(ipc: int, name: str, result: dict, random: dict, full: dict, augment: bool, architectures: list[str]) -> list[str]:
    own, base = result["convnet"][augment], random["convnet"][augment]
    spread = (own["std"] ** 2 + base["std"] ** 2) ** 0.5
    gain = own["mean"] - base["mean"]
    cells = [f"{result[a][augment]['mean']:.1f} ± {result[a][augment]['std']:.1f}" if a in result else "–"
             for a in architectures]
    verdict = "–" if name == "random" else (f"{gain:+.1f} ({'> 2σ' if gain > 2 * spread else 'within 2σ'})")
    return [str(ipc), name, "DSA" if augment else "none", *cells, verdict, f"{full['mean'] - own['mean']:.1f}"]


def full_data(recipe, bank, test, path: Path, networks: int) -> dict:
    """The full training set under the protocol (ConvNet, ``evaluate.full_epochs``), cached in ``path`` so that
    several invocations (one per IPC) share one measurement."""
    if path.exists():
        return json.loads(path.read_text())
    factory = network_factory("convnet", bank, recipe.network.width, recipe.network.depth)
    result = evaluate_set(bank.images, bank.labels, *test, factory, networks=networks, seed=0,
                          epochs=recipe.evaluate.full_epochs, lr=recipe.evaluate.lr, batch_size=recipe.evaluate.batch_size)
    path.write_text(json.dumps(result))
    return result


def cross_architecture(recipe, bank, test, images, labels, networks: int) -> dict:
    """The first seed's set trained by every architecture, without evaluation augmentation, ``networks`` each:
    the cross-architecture check (cheaper than the main protocol: a ResNet costs ~15× a ConvNet here)."""
    spec = recipe.evaluate.model_copy(update={"architectures": list(ARCHITECTURES), "augment": [False],
                                              "networks": networks})
    return {a: r[False] for a, r in protocol(recipe.model_copy(update={"evaluate": spec}), bank, test, images, labels,
                                            0).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--methods", nargs="+", default=None, help="methods at every IPC (default: METHODS)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="distillation seeds")
    parser.add_argument("--cross", nargs="+", default=["dm", "random"], help="sets also scored with mlp and resnet")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every recipe")
    parser.add_argument("--method-seeds", nargs="+", default=[], metavar="METHOD=S,S",
                        help="distillation seeds of one method (default: --seeds), e.g. dc=0")
    parser.add_argument("--cross-networks", type=int, default=2, help="networks per architecture in the cross check")
    parser.add_argument("--full-networks", type=int, default=2, help="networks trained on the full data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    method_seeds = {k: [int(v) for v in seeds.split(",")] for k, seeds in (m.split("=") for m in args.method_seeds)}
    started = time.perf_counter()
    seeds = [f"evaluate.seeds={args.seeds}".replace(" ", "")]
    base = recipe_for("dm", 10, [*args.set, *seeds])
    architectures = ["convnet"]
    bank, *test = load_real(base)
    test = tuple(test)
    run = Run(Path("runs/bench_dataset/shared"), base)
    teacher = full_data_teacher(base, run, bank)
    key = content_hash(stage_identity(base.data, base.network, base.evaluate.full_epochs, base.evaluate.lr,
                                      base.evaluate.batch_size, args.full_networks))
    full = full_data(base, bank, test, run.folder / f"full_data_{key}.json", args.full_networks)
    print(f"full training set: {full['mean']:.2f} ± {full['std']:.2f} % ({time.perf_counter() - started:.0f} s)", flush=True)
    out = {"command": "python " + " ".join(sys.argv), "machine": machine(), "threads": args.threads,
           "seeds": args.seeds, "overrides": args.set, "full": full, "protocol": base.evaluate.model_dump(mode="json"),
           "network": base.network.model_dump(mode="json"), "ipcs": {}}
    rows = []
    for ipc in args.ipc:
        per_ipc = {"sets": {}, "cross": {}, "condensation": {}, "ranking": {}, "recipes": {}}
        for name in ("random", "herding"):
            if name == "random":
                chosen = [random_subset(bank, ipc, torch.Generator().manual_seed(BASELINE_SEED + s)) for s in args.seeds]
            else:
                with tapped(teacher, base.network.tap, "full-data teacher") as features:
                    chosen = [herding_subset(bank, ipc, features)] * len(args.seeds)
            per_ipc["sets"][name] = pooled([protocol(scoped(base, ["convnet"]), bank, test, *subset, seed)
                                            for subset, seed in zip(chosen, args.seeds)])
            if name in args.cross:
                per_ipc["cross"][name] = cross_architecture(base, bank, test, *chosen[0], args.cross_networks)
            print(f"ipc {ipc} {name}: {per_ipc['sets'][name]['convnet'][False]['mean']:.2f} % "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        for method in args.methods or METHODS.get(ipc, ["dm"]):
            recipe = recipe_for(method, ipc, [*args.set, *seeds])
            recipe = scoped(recipe, ["convnet"])
            method_run = Run(Path("runs/bench_dataset") / f"{method}_ipc{ipc}", recipe)
            factory = network_factory(recipe.network.name, bank, recipe.network.width, recipe.network.depth)
            trajectories = (expert_trajectories(recipe, method_run, bank, factory, DSA() if recipe.method.dsa else None)
                            if method == "mtt" else None)
            seeds_here = method_seeds.get(method, args.seeds)
            condensed = [condense_seed(recipe, method_run, bank, s, trajectories) for s in seeds_here]
            result = pooled([protocol(recipe, bank, test, c["synthetic"].images.detach(), c["synthetic"].labels, s)
                             for c, s in zip(condensed, seeds_here)])
            per_ipc["sets"][method] = result
            if method in args.cross:
                synthetic = condensed[0]["synthetic"]
                per_ipc["cross"][method] = cross_architecture(base, bank, test, synthetic.images.detach(),
                                                              synthetic.labels, args.cross_networks)
            per_ipc["ranking"][method] = ranking(recipe, {method: result, "random": per_ipc["sets"]["random"]}, {}, full)
            per_ipc["condensation"][method] = [
                {"seed": s, "seconds": c["seconds"], "iterations": len(c["history"]),
                 "iterations_per_second": len(c["history"]) / c["seconds"] if c["seconds"] else None,
                 "final_loss": c["history"][-1]["loss"] if c["history"] else None} for s, c in zip(seeds_here, condensed)]
            per_ipc["recipes"][method] = recipe.model_dump(mode="json")
            plot_grid(condensed[0]["synthetic"].images, ipc, args.out.with_name(f"dataset_{method}_ipc{ipc}.png"))
            print(f"ipc {ipc} {method}: {result['convnet'][False]['mean']:.2f} % "
                  f"({per_ipc['condensation'][method][0]['iterations_per_second'] or 0:.2f} it/s; "
                  f"{time.perf_counter() - started:.0f} s)", flush=True)
        for name, result in per_ipc["sets"].items():
            for augment in base.evaluate.augment:
                rows.append(gain_row(ipc, name, result, per_ipc["sets"]["random"], full, augment, architectures))
        out["ipcs"][ipc] = per_ipc
        write_json(args.out, {**out, "seconds": time.perf_counter() - started})  # each finished IPC is kept
    print_table(["IPC", "set", "eval aug", *[f"{a} %" for a in architectures], "gain over random (convnet)",
                 "gap to full"], rows)
    cross = [[str(ipc), name, *[f"{r[a]['mean']:.1f} ± {r[a]['std']:.1f}" for a in ARCHITECTURES]]
             for ipc in args.ipc for name, r in out["ipcs"][ipc]["cross"].items()]
    if cross:
        print_table(["IPC", "set (seed 0)", *[f"{a} %, no aug" for a in ARCHITECTURES]], cross)
    curves = {name: {ipc: out["ipcs"][ipc]["sets"][name]["convnet"][False] for ipc in args.ipc
                     if name in out["ipcs"][ipc]["sets"]}
              for name in dict.fromkeys(n for ipc in args.ipc for n in out["ipcs"][ipc]["sets"])}
    plot_accuracy_vs_ipc(curves, full, args.out.with_suffix(".png"), "MNIST, ConvNet, no evaluation augmentation")
    out["seconds"] = time.perf_counter() - started
    write_json(args.out, out)


if __name__ == "__main__":
    main()
