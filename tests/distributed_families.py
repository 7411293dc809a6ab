"""The steps, score and dataset families at the tiniest budgets, for distributed_run.py: each part trains through
the family's Python entry points (its objective and the engine's ``train``, or ``condense``) on in-memory data and
returns the numbers test_distributed.py compares between one process and two.

- ``flow``: a class-conditional flow-matching model with classifier-free-guidance label dropout;
- ``progressive``: one round of progressive distillation of a 2-D flow-matching toy teacher (student and EMA);
- ``dmd``: DMD2 with its two optimizers (the generator steps every second step), backward simulation over two
  steps and the GAN head on the fake score (generator, fake score, head);
- ``sds`` / ``vsd``: particles moved by SDS under an exact prior, and by VSD (its online score a second group)
  under a network prior; the particles are split between the processes as the batch is;
- ``scene``: a Gaussian-splat object moved by SDS through its renders, the cameras split as the particles are;
- ``dm``: distribution matching on digits, the real images of each class split between the processes and the
  per-class embedding sums added up over them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from distill.data import TensorDictDataset
from distill.data.base import DataSplits
from distill.data.toys import eight_gaussians
from distill.diffusion import Denoiser, build_denoiser, build_process
from distill.diffusion.exact import ExactDenoiser
from distill.diffusion.objective import DenoisingObjective
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.scenes import GaussianScene, ellipsoid_mesh, orbit, pose_vector, render_mesh
from distill.tasks.dataset.condense import build_network, class_bank, condense, seeded_start
from distill.tasks.score import GUIDANCES, ParticlesObjective
from distill.tasks.score.objectives import SceneObjective
from distill.tasks.score.view_prior import ViewConditionedExactDenoiser
from distill.tasks.steps.methods.dmd import DMDObjective
from distill.tasks.steps.methods.progressive import ProgressiveObjective

CONFIG = dict(steps=10, batch_size=64, lr=1e-3, progress=False, log_every=5)


def _flat(*modules: torch.nn.Module) -> list[float]:
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()]).tolist()


def _teacher(seed: int = 2) -> Denoiser:
    """A 2-D flow-matching denoiser with N(0, 0.3) weights (far from its initialisation, so it says something)."""
    torch.manual_seed(seed)
    net = build_denoiser("mlp", (2,), 0, hidden=16, depth=1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return Denoiser(net, build_process("flow"), "velocity").eval().requires_grad_(False)


def _trainable(denoiser: Denoiser) -> Denoiser:
    return copy.deepcopy(denoiser).requires_grad_(True).train()


def _toy_data(classes: int = 1) -> TensorDictDataset:
    x = eight_gaussians(256, torch.Generator().manual_seed(3))
    return TensorDictDataset(x=x, y=torch.arange(len(x)) % classes)


def flow(out: Path) -> dict:
    """A class-conditional flow-matching model trained from scratch, labels dropped to the null class at 0.3."""
    torch.manual_seed(5)
    model = Denoiser(build_denoiser("mlp", (2,), 2, hidden=16, depth=1), build_process("flow"), "velocity", num_classes=2)
    start = _flat(model)
    result = train(DenoisingObjective(model, cond_drop=0.3), _toy_data(classes=2), TrainConfig(**{**CONFIG, "lr": 1e-2}), out / "flow")
    return {"weights": _flat(model), "start": start, "train_loss": result.final["train_loss"]}


def progressive(out: Path) -> dict:
    teacher = _teacher()
    objective = ProgressiveObjective(_trainable(teacher), teacher, steps=2, ema_decay=0.9)
    start = _flat(objective.model)
    result = train(objective, _toy_data(), TrainConfig(**CONFIG), out / "progressive")
    return {"weights": _flat(objective.model, objective.ema), "start": start,
            "train_loss": result.final["train_loss"]}


def dmd(out: Path) -> dict:
    teacher = _teacher()
    objective = DMDObjective(_trainable(teacher), _trainable(teacher), teacher, steps=2, regression=0.0,
                             t_range=(0.02, 0.98), generator_every=2, gan=0.1, gan_discriminator=0.01, ema_decay=0.9)
    groups = {"generator": {"every": 2, "max_grad_norm": 10.0}, "fake": {"max_grad_norm": 10.0}}
    start = _flat(objective.model)
    result = train(objective, _toy_data(), TrainConfig(**CONFIG, groups=groups), out / "dmd")
    return {"weights": _flat(objective.model, objective.fake, objective.head), "start": start,
            "train_loss": result.final["train_loss"]}


def particles(out: Path, guidance: str) -> dict:
    if guidance == "sds":
        prior = ExactDenoiser(torch.tensor([[1.0, 2.0], [-1.5, 0.5]]), build_process("flow"))
    else:
        prior = _teacher()
    init = torch.randn(64, 2, generator=torch.Generator().manual_seed(4))
    objective = ParticlesObjective(GUIDANCES.build(guidance), prior, init, total_steps=10)
    config = TrainConfig(**{**CONFIG, "batch_size": 32}, groups={"particles": {"lr": 0.05}})
    result = train(objective, ParticlesObjective.dataset(64), config, out / guidance)
    extra = _flat(objective.fake) if objective.fake is not None else []
    return {"weights": objective.particles.detach().flatten().tolist() + extra, "start": init.flatten().tolist(),
            "train_loss": result.final["train_loss"]}


def scene(out: Path) -> dict:
    """A 3-D object by SDS under an exact view-conditioned prior of an ellipsoid's renders: the cameras of each batch
    are split between the processes. SGD: under Adam the two runs part by 2e-5 in ten steps (Adam divides the splats'
    near-zero gradients by their own size, which magnifies the rounding of the differently ordered render sums)."""
    cameras = orbit(8, elevation=15.0)
    views = 2 * render_mesh(ellipsoid_mesh(), cameras, 8) - 1
    prior = ViewConditionedExactDenoiser(views, pose_vector(cameras), build_process("flow"), kappa_degrees=10.0)
    made = GaussianScene.random(24, 0.5, channels=1, generator=torch.Generator().manual_seed(0))
    start = _flat(made)
    objective = SceneObjective(GUIDANCES.build("sds"), prior, made, cameras, 8, total_steps=10)
    config = TrainConfig(**{**CONFIG, "batch_size": 4, "lr": 1.0, "optimizer": "sgd"})
    result = train(objective, objective.dataset(), config, out / "scene")
    return {"weights": _flat(made), "start": start, "train_loss": result.final["train_loss"]}


def dm(splits: DataSplits) -> dict:
    """``embedded``: the rows each fresh network of this process embedded (real images, then synthetic ones)."""
    bank, embedded = class_bank(splits), []

    def network() -> torch.nn.Module:
        net = build_network("convnet", bank.image_shape, bank.num_classes, width=8, depth=2)
        net.register_forward_pre_hook(lambda module, args: embedded.append(len(args[0])))
        return net

    made = condense(bank, "dm", ipc=2, iterations=4, network=network, options={"real_per_class": 16}, seed=0)
    start = seeded_start(bank, 2, "real", 0)[0].images
    return {"weights": made.synthetic.images.flatten().tolist(), "start": start.flatten().tolist(),
            "losses": [row["loss"] for row in made.history], "embedded": embedded}


def families(out: Path, splits: DataSplits) -> dict:
    """Every part's numbers, by name."""
    return {"flow": flow(out), "progressive": progressive(out), "dmd": dmd(out), "sds": particles(out, "sds"),
            "vsd": particles(out, "vsd"), "scene": scene(out), "dm": dm(splits)}
