"""Distribution matching distillation: a one-step generator pulled by real − fake score."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import broadcast
from distill.diffusion.sampling import RenoisingGenerator, time_grid
from distill.diffusion.surrogate import score_distillation_loss
from distill.engine.config import GroupConfig
from distill.errors import ConfigError
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext, flat_mean, frozen


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


class DMDObjective(nn.Module):
    """Generator loss (distribution matching + optional regression on teacher pairs) plus the fake
    score's denoising loss on detached generator samples. The two are separate parameter groups
    (``generator``, ``fake``): each has its own learning rate and clipping, and the generator may
    step less often than the fake score (DMD2's two-time-scale update)."""

    def __init__(self, generator: Denoiser, fake: Denoiser, teacher: Denoiser, steps: int, regression: float,
                 t_range: tuple[float, float]) -> None:
        super().__init__()
        self.model, self.fake, self.teacher = generator, fake, frozen(teacher)
        self.steps, self.regression, self.t_range = steps, regression, t_range

    def generator_inputs(self, noise: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        """(x_t, t) on the k-step grid: pure noise at t = 1, else the generator's own one-step
        sample re-noised to t_i (backward simulation as in DMD2, Yin et al., NeurIPS 2024)."""
        grid = time_grid(self.steps, noise.device)[:-1]
        t = grid[torch.randint(len(grid), (len(noise),), device=noise.device)]
        if self.steps == 1:
            return noise, t
        with torch.no_grad():
            first = generate(self.model, noise, torch.ones_like(t), y)
        renoised = self.model.process.noise(first, torch.randn_like(noise), t)
        return torch.where(broadcast(t == 1, noise), noise, renoised), t

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"generator": list(self.model.parameters()), "fake": list(self.fake.parameters())}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pair_sample, noise, y = batch["sample"], batch["noise"], batch["y"]
        x = noise
        process = self.model.process
        x_t, t_in = self.generator_inputs(noise, y)
        sample = generate(self.model, x_t, t_in, y)
        low, high = self.t_range
        t = low + (high - low) * torch.rand(len(x), device=x.device)
        eps = torch.randn_like(sample)
        noisy = process.noise(sample, eps, t)
        with torch.no_grad():
            real_x0 = self.teacher.split(noisy, t, y)[0]
            fake_x0 = self.fake.split(noisy, t, y)[0]
        losses = {"dm": distribution_matching_loss(sample, real_x0, fake_x0)}
        if self.regression:
            # With one step the generator's sample already is its one-step output from this noise.
            one_step = sample if self.steps == 1 else generate(self.model, noise, torch.ones_like(t), y)
            losses["regression"] = self.regression * flat_mean((one_step - pair_sample) ** 2).mean()
        fake_t = torch.rand(len(x), device=x.device)
        fake_eps = torch.randn_like(sample)
        fake_in = process.noise(sample.detach(), fake_eps, fake_t)
        fake_pred = self.fake.net(fake_in, fake_t, self.fake.labels(y))
        target = process.target(self.fake.prediction, sample.detach(), fake_eps, fake_t)
        losses["fake"] = (fake_pred - target).pow(2).mean()
        return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}


@STEP_METHODS.register("dmd")
class DMD(StepMethod):
    """Distribution matching distillation (Yin et al., CVPR 2024; DMD2, NeurIPS 2024): generator and
    fake score both start from the teacher; ``regression`` > 0 adds DMD's paired regression loss
    (L2 here, LPIPS in the paper). ``steps`` > 1 trains a multi-step generator as DMD2 does."""

    def __init__(self, steps: int = 1, regression: float = 0.25, pairs: int = 0,
                 t_range: tuple[float, float] = (0.02, 0.98), fake_updates: int = 1) -> None:
        if steps < 1 or regression < 0:
            raise ConfigError(f"dmd: need steps >= 1 and regression >= 0, got {steps} and {regression}.")
        if not 0.0 <= t_range[0] < t_range[1] <= 1.0:
            raise ConfigError(f"dmd: t_range must satisfy 0 <= low < high <= 1, got {t_range}.")
        if not isinstance(fake_updates, int) or fake_updates < 1:
            raise ConfigError(f"dmd: fake_updates (fake-score steps per generator step; DMD2 uses 5) must be an "
                              f"integer >= 1, got {fake_updates!r}.")
        self.steps, self.regression, self.pairs, self.t_range = steps, regression, pairs, tuple(t_range)
        self.fake_updates = fake_updates

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        pairs = context.teacher_pairs(self.pairs or None)
        generator, fake = context.student(), context.student()
        own = context.train.groups.get("generator", GroupConfig())
        if "every" not in own.model_fields_set:  # the recipe's own train.groups.generator.every wins
            own = own.model_copy(update={"every": self.fake_updates})
        groups = {**context.train.groups, "generator": own}
        context.stage(DMDObjective(generator, fake, context.teacher, self.steps, self.regression, self.t_range),
                      pairs, "dmd", context.train.model_copy(update={"groups": groups}))
        return dict.fromkeys(sorted({1, self.steps}), frozen(generator))

    def generator(self, denoiser: Denoiser) -> RenoisingGenerator:
        return RenoisingGenerator(lambda x, t, y: generate(denoiser, x, t, y), denoiser.process, module=denoiser)
