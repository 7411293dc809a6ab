"""Distribution matching distillation as in DMD2: a few-step generator pulled by real − fake score."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from distill.data.tensors import TensorDictDataset
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.objective import denoising_loss
from distill.diffusion.process import broadcast
from distill.diffusion.sampling import RenoisingGenerator, time_points
from distill.diffusion.surrogate import score_distillation_loss
from distill.engine import draws
from distill.engine.config import GroupConfig
from distill.errors import ConfigError, check_int
from distill.models.base import frozen
from distill.taps import TapRecorder, TapSpec
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay, flat_mean


def generate(generator: Denoiser, noise: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
    """The generator's sample: its x0 prediction at ``(noise, t)``."""
    return generator.split(noise, t, y)[0]


def distribution_matching_loss(x: Tensor, real_x0: Tensor, fake_x0: Tensor) -> Tensor:
    """Surrogate whose gradient in ``x`` is the DMD update (Yin et al., CVPR 2024, eq. 7–8).

    ∇KL ∝ s_fake − s_real ∝ x̂0_real − x̂0_fake (negated); normalised per sample by
    ``mean |x − x̂0_real|``, and applied through the score-distillation surrogate.
    """
    weight = 1.0 / flat_mean((x - real_x0).abs()).clamp(min=1e-5)
    return score_distillation_loss(x, (fake_x0 - real_x0) * broadcast(weight, x))


@torch.no_grad()
def backward_simulation(generator: Denoiser, noise: Tensor, y: Tensor | None, steps: int,
                        level: Tensor) -> Tensor:
    """The input the generator sees at grid level ``level`` (per row, 0 = pure noise at t = 1) of its
    own ``steps``-step chain: predict x0, re-noise it to the next time with fresh noise, repeat
    (DMD2's backward simulation, Yin et al., NeurIPS 2024) — the same chain, and the same draws of
    the global RNG, as :class:`RenoisingGenerator` sampling."""
    times = time_points(steps)[:-1]
    x = noise
    inputs = [noise]
    for t in times[1:int(level.max()) + 1]:
        x0 = generate(generator, x, noise.new_full((len(noise),), times[len(inputs) - 1]), y)
        x = generator.process.noise(x0, draws.randn_like(noise), noise.new_full((len(noise),), t))
        inputs.append(x)
    stacked = torch.stack(inputs)  # (levels reached, B, ...)
    return stacked[level, torch.arange(len(noise), device=noise.device)]


def encoder_output(net: nn.Module) -> tuple[TapSpec, int]:
    """The tap whose output DMD2's GAN head reads (the U-Net bottleneck; the middle block of a
    residual MLP; a wrapped network's own ``bottleneck``, e.g. a diffusers UNet's mid block) and its width."""
    if getattr(net, "bottleneck", None) is not None:
        path, width = net.bottleneck
        return TapSpec(path), width
    if hasattr(net, "mid"):
        return TapSpec(f"mid.{len(net.mid) - 1}"), net.channels[-1]
    if hasattr(net, "blocks"):
        return TapSpec(f"blocks.{len(net.blocks) // 2}"), net.inp.out_features
    raise ConfigError(f"dmd: the GAN term needs a U-Net or residual-MLP fake score, got {type(net).__name__}; "
                      "set gan: 0.")


class DMDObjective(StudentObjective):
    """DMD2's two players as two parameter groups of one objective (Yin et al., NeurIPS 2024):

    - ``generator``: the distribution-matching gradient on a sample from *fresh* noise (through
      backward simulation for several steps), plus optionally the regression onto teacher pairs
      (DMD, CVPR 2024) and the non-saturating GAN loss of a head on the fake score's features;
    - ``fake``: the fake score's denoising loss on detached generator samples and, with the GAN
      term, the head's real-vs-generated classification loss.

    The generator steps once every ``generator_every`` optimizer steps (DMD2's two-time-scale
    update); on the others its loss is not computed at all, and the log repeats its last values.
    """

    def __init__(self, generator: Denoiser, fake: Denoiser, teacher: Denoiser, steps: int, regression: float,
                 t_range: tuple[float, float], generator_every: int = 1, gan: float = 0.0,
                 gan_discriminator: float = 0.0, ema_decay: float = 0.0) -> None:
        super().__init__(generator, ema_decay)
        self.fake, self.teacher = fake, frozen(teacher)
        self.steps, self.regression, self.t_range = steps, regression, t_range
        self.generator_every, self.gan, self.gan_discriminator = generator_every, gan, gan_discriminator
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # saved with checkpoints
        self.last_generator: dict[str, Tensor] = {}
        if gan:
            self.tap, width = encoder_output(fake.net)
            self.recorder = TapRecorder(fake.net, [self.tap], "fake score")
            self.head = nn.Sequential(nn.SiLU(), nn.Linear(width, 1))

    def after_optimizer_step(self, step: int) -> None:
        self.steps_done.fill_(step)
        super().after_optimizer_step(step)

    @property
    def generator_steps_now(self) -> bool:
        """Whether the coming optimizer step updates the generator (the engine's ``every`` rule)."""
        return (int(self.steps_done) + 1) % self.generator_every == 0

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        fake = list(self.fake.parameters()) + (list(self.head.parameters()) if self.gan else [])
        return {"generator": list(self.model.parameters()), "fake": fake}

    def generator_inputs(self, noise: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        """(x_t, t) at a uniformly drawn level of the k-step grid, by backward simulation."""
        times = torch.tensor(time_points(self.steps)[:-1], device=noise.device)
        level = draws.randint(0, len(times), len(noise), noise.device)
        if self.steps == 1:
            return noise, times[level]
        return backward_simulation(self.model, noise, y, self.steps, level), times[level]

    def logit(self, x_t: Tensor, t: Tensor, y: Tensor | None, params: dict[str, Tensor] | None = None) -> Tensor:
        """The GAN head's logit on the fake score's features at ``(x_t, t)``; with ``params`` the fake
        score runs on those (detached) weights, so the generator's GAN gradient stops at its input."""
        labels = self.fake.labels(y)
        if params is None:
            self.fake.net(x_t, t, labels)
        else:
            functional_call(self.fake.net, params, (x_t, t, labels))
        features = self.recorder.get(self.tap)
        pooled = features.mean(dim=(2, 3)) if features.dim() == 4 else features
        if params is None:
            return self.head(pooled).squeeze(1)
        head = {k: v.detach() for k, v in self.head.named_parameters()}
        return functional_call(self.head, head, (pooled,)).squeeze(1)

    def generator_losses(self, batch: dict[str, Tensor], sample: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        process = self.model.process
        low, high = self.t_range
        t = low + (high - low) * draws.rand(len(sample), sample.device)
        noisy = process.noise(sample, draws.randn_like(sample), t)
        with torch.no_grad():
            real_x0 = self.teacher.split(noisy, t, y)[0]
            fake_x0 = self.fake.split(noisy, t, y)[0]
        losses = {"dm": distribution_matching_loss(sample, real_x0, fake_x0)}
        if self.regression:
            one_step = generate(self.model, batch["noise"], torch.ones_like(t), y)
            losses["regression"] = self.regression * flat_mean((one_step - batch["sample"]) ** 2).mean()
        if self.gan:
            t_gan = draws.rand(len(sample), sample.device)
            params = {k: v.detach() for k, v in self.fake.net.named_parameters()}
            params.update({k: v for k, v in self.fake.net.named_buffers()})
            logit = self.logit(process.noise(sample, draws.randn_like(sample), t_gan), t_gan, y, params)
            losses["gan"] = self.gan * F.softplus(-logit).mean()
        return losses

    def fake_losses(self, batch: dict[str, Tensor], sample: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        process = self.fake.process
        t = draws.rand(len(sample), sample.device)
        losses = {"fake": denoising_loss(self.fake, sample, y, t=t)}
        if self.gan:
            real = batch["x"]
            t_real = draws.rand(len(real), real.device)
            real_logit = self.logit(process.noise(real, draws.randn_like(real), t_real), t_real, y)
            fake_logit = self.logit(process.noise(sample, draws.randn_like(sample), t), t, y)
            losses["discriminator"] = self.gan_discriminator * (F.softplus(-real_logit) + F.softplus(fake_logit)).mean()
        return losses

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        y = batch["y"]
        noise = draws.randn_like(batch["sample"] if "sample" in batch else batch["x"])  # fresh, not the pairs'
        stepping = self.generator_steps_now
        x_t, t_in = self.generator_inputs(noise, y)
        with torch.set_grad_enabled(stepping and torch.is_grad_enabled()):
            sample = generate(self.model, x_t, t_in, y)
        losses = {}
        if stepping:
            losses = self.generator_losses(batch, sample, y)
            self.last_generator = {k: v.detach() for k, v in losses.items()}
        elif not self.last_generator:  # before the generator's first step: log zeros, not missing keys
            names = ["dm"] + ["regression"] * bool(self.regression) + ["gan"] * bool(self.gan)
            self.last_generator = {k: sample.new_zeros(()) for k in names}
        fake = self.fake_losses(batch, sample.detach(), y)
        total = sum(losses.values()) + sum(fake.values())
        return {"loss": total, **self.last_generator, **{k: v.detach() for k, v in fake.items()}}


@STEP_METHODS.register("dmd")
class DMD(StepMethod):
    """DMD2 (Yin et al., NeurIPS 2024) from DMD (Yin et al., CVPR 2024): generator and fake score both
    start from the teacher; separate optimizers, each clipped at ``max_grad_norm`` unless the
    recipe's ``train.groups`` says otherwise; ``fake_updates`` fake-score steps per generator step;
    fresh noise for the distribution-matching term; ``gan`` > 0 adds the GAN head on the fake score
    (weight ``gan`` on the generator, ``gan_discriminator`` on the head); ``regression`` > 0 adds
    DMD's paired regression loss (L2 here, LPIPS in the paper) on ``pairs`` teacher samples — with
    ``regression: 0`` no pairs are generated. ``steps`` > 1 trains a multi-step generator by
    backward simulation. Samples come from the generator's EMA."""

    def __init__(self, steps: int = 1, regression: float = 0.0, pairs: int = 0,
                 t_range: tuple[float, float] = (0.02, 0.98), fake_updates: int = 5, gan: float = 0.0,
                 gan_discriminator: float = 0.01, max_grad_norm: float | None = 10.0,
                 ema_decay: float = 0.999) -> None:
        check_int("dmd: steps", steps)
        for name, value in (("regression", regression), ("gan", gan), ("gan_discriminator", gan_discriminator)):
            if value < 0:
                raise ConfigError(f"dmd: {name} is a loss weight and must be >= 0 (0 turns it off), got {value}.")
        if gan and not gan_discriminator:
            raise ConfigError("dmd: gan > 0 needs gan_discriminator > 0, or the head never learns real from fake.")
        if not 0.0 <= t_range[0] < t_range[1] <= 1.0:
            raise ConfigError(f"dmd: t_range must satisfy 0 <= low < high <= 1, got {t_range}.")
        check_int("dmd: fake_updates (fake-score steps per generator step; DMD2 uses 5)", fake_updates)
        if max_grad_norm is not None and max_grad_norm <= 0:
            raise ConfigError(f"dmd: max_grad_norm must be > 0 or null (no clipping), got {max_grad_norm}.")
        self.steps, self.regression, self.pairs, self.t_range = steps, regression, pairs, tuple(t_range)
        self.fake_updates, self.gan, self.gan_discriminator = fake_updates, gan, gan_discriminator
        self.max_grad_norm, self.ema_decay = max_grad_norm, check_ema_decay("dmd", ema_decay)

    def check(self, teacher: Denoiser) -> None:
        if self.gan:
            encoder_output(teacher.net)

    def groups(self, context: StepsContext) -> dict[str, GroupConfig]:
        """The recipe's ``train.groups`` with this method's defaults where the recipe left a field unset."""
        groups = {}
        for name, every in (("generator", self.fake_updates), ("fake", 1)):
            own = context.train.groups.get(name, GroupConfig())
            defaults = {"every": every, "max_grad_norm": self.max_grad_norm}
            groups[name] = own.model_copy(update={k: v for k, v in defaults.items() if k not in own.model_fields_set})
        return {**context.train.groups, **groups}

    def data(self, context: StepsContext) -> TensorDictDataset:
        """Teacher pairs (with the real image of each pair's label) when regressing, else the real data."""
        if self.regression:
            return context.teacher_pairs(self.pairs or None)
        return TensorDictDataset(x=context.splits.train.x, y=context.splits.train.y)

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        groups = self.groups(context)
        objective = DMDObjective(context.student(), context.student(), context.teacher, self.steps, self.regression,
                                 self.t_range, groups["generator"].every, self.gan, self.gan_discriminator,
                                 self.ema_decay)
        context.stage(objective, self.data(context), "dmd", context.train.model_copy(update={"groups": groups}))
        return dict.fromkeys(sorted({1, self.steps}), context.for_sampling(objective.ema))

    def generator(self, denoiser: Denoiser) -> RenoisingGenerator:
        return RenoisingGenerator(lambda x, t, y: generate(denoiser, x, t, y), denoiser.process, module=denoiser)
