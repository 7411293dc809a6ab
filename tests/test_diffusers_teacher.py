"""A diffusers folder as a teacher (issue 27): the scheduler config mapped onto distill's process and
parameterisation is checked against diffusers itself — the same x_t, the same prediction, and distill's
DDIM / Euler samplers equal to diffusers' own scheduler loops — and bad folders fail with one clear error."""

from __future__ import annotations

import pytest
import torch
from diffusers_fixtures import edit_config, save_folder, tiny_unet

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.diffusers_folder import load_diffusers_model
from distill.diffusion.process import DiscreteDiffusion
from distill.diffusion.sampling import OdeGenerator
from distill.errors import ConfigError
from distill.experiment import load_recipe

diffusers = pytest.importorskip("diffusers")

SHAPE = (1, 8, 8)


def load(folder, num_classes: int = 0, cfg_scale: float = 1.0, shape=SHAPE):
    """The folder's model as a distill Denoiser, and the raw diffusers UNet and scheduler."""
    found = load_diffusers_model(f"diffusers:{folder}", shape, num_classes, cfg_scale)
    denoiser = Denoiser(found.net, found.process, found.prediction, num_classes, cfg_scale, found.clip)
    config = found.net.scheduler
    return denoiser, found.net.unet, getattr(diffusers, config["_class_name"]).from_config(config)


def assert_close(ours: torch.Tensor, reference: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal to float tolerance relative to the reference's scale (ε-prediction samples of a random UNet
    reach hundreds)."""
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max() <= rtol * (1 + reference.abs().max()), (ours - reference).abs().max()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_discrete_noising_and_prediction_match_diffusers(tmp_path, prediction_type):
    denoiser, unet, scheduler = load(save_folder(tmp_path, "ddpm", prediction_type=prediction_type))
    x0, eps = torch.randn(4, *SHAPE), torch.randn(4, *SHAPE)
    timesteps = torch.tensor([0, 10, 500, 999])
    t = (timesteps + 1).float() / scheduler.config.num_train_timesteps
    x_t = scheduler.add_noise(x0, eps, timesteps)
    assert_close(denoiser.process.noise(x0, eps, t), x_t)
    with torch.no_grad():
        output = unet(x_t, timesteps).sample
        assert_close(denoiser(x_t, t), output)
        ddim = diffusers.DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(1000)
        expected_x0 = torch.stack([ddim.step(o[None], k, x[None]).pred_original_sample[0]
                                   for o, k, x in zip(output, timesteps, x_t)])
        assert_close(denoiser.split(x_t, t)[0], expected_x0)
    assert denoiser.prediction == {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[prediction_type]


def test_flow_noising_and_prediction_match_diffusers(tmp_path):
    denoiser, unet, scheduler = load(save_folder(tmp_path, "flow"))
    scheduler.set_timesteps(10)
    timesteps = scheduler.timesteps[[0, 3, 6, 9]]
    x0, eps = torch.randn(4, *SHAPE), torch.randn(4, *SHAPE)
    t = timesteps / scheduler.config.num_train_timesteps
    x_t = scheduler.scale_noise(x0, timesteps, eps)
    assert_close(denoiser.process.noise(x0, eps, t), x_t)
    with torch.no_grad():
        assert_close(denoiser(x_t, t), unet(x_t, timesteps).sample)
    assert denoiser.prediction == "velocity"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_sampler_matches_the_diffusers_loop(tmp_path, prediction_type):
    """distill's uniform DDIM grid is diffusers' DDIM with trailing spacing and ᾱ = 1 at the end."""
    denoiser, unet, scheduler = load(save_folder(tmp_path, "ddpm", prediction_type=prediction_type))
    ddim = diffusers.DDIMScheduler.from_config(scheduler.config, timestep_spacing="trailing", set_alpha_to_one=True)
    for steps in (1, 4, 10):
        noise = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(steps))
        ddim.set_timesteps(steps)
        x = noise
        with torch.no_grad():
            for k in ddim.timesteps:
                x = ddim.step(unet(x, k).sample, k, x).prev_sample
        assert_close(OdeGenerator(denoiser, "ddim").sample(noise, None, steps), x, rtol=1e-4)


def test_clip_sample_is_the_denoisers_x0_clipping(tmp_path):
    denoiser, unet, scheduler = load(save_folder(tmp_path, "ddim", clip_sample=True, clip_sample_range=1.5))
    assert denoiser.clip == 1.5
    ddim = diffusers.DDIMScheduler.from_config(scheduler.config, timestep_spacing="trailing", set_alpha_to_one=True)
    ddim.set_timesteps(4)
    noise = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    x = noise
    with torch.no_grad():
        for k in ddim.timesteps:
            x = ddim.step(unet(x, k).sample, k, x, use_clipped_model_output=True).prev_sample
    assert_close(OdeGenerator(denoiser, "ddim").sample(noise, None, 4), x, rtol=1e-4)


def test_flow_euler_with_class_labels_and_guidance_matches_the_diffusers_loop(tmp_path):
    """A class-conditional flow UNet with one extra class embedding (the null class): distill's Euler and
    DDIM steps under classifier-free guidance w = 2 equal diffusers' Euler loop on the guided velocity."""
    classes, w = 3, 2.0
    denoiser, unet, scheduler = load(save_folder(tmp_path, "flow", num_class_embeds=classes + 1), classes, w)
    labels = torch.tensor([0, 2, 1])
    null = torch.full_like(labels, classes)
    for steps in (1, 4, 5):
        noise = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(steps))
        scheduler.set_timesteps(sigmas=[(steps - i) / steps for i in range(steps)])
        x = noise
        with torch.no_grad():
            for k in scheduler.timesteps:
                cond, uncond = unet(torch.cat([x, x]), k, class_labels=torch.cat([labels, null])).sample.chunk(2)
                x = scheduler.step(uncond + w * (cond - uncond), k, x).prev_sample
        for solver in ("euler", "ddim"):
            assert_close(OdeGenerator(denoiser, solver).sample(noise, labels, steps), x, rtol=1e-5)
    with torch.no_grad():  # the labels reach the UNet: another class gives another velocity
        x, t = torch.randn(3, *SHAPE), torch.full((3,), 0.5)
        assert (denoiser.net(x, t, labels) - denoiser.net(x, t, labels.roll(1))).abs().max() > 1e-3


def test_a_flat_folder_reads_like_a_pipeline_folder(tmp_path):
    flat, _, _ = load(save_folder(tmp_path / "flat", "ddpm", pipeline=False))
    nested, _, _ = load(save_folder(tmp_path / "nested", "ddpm"))
    x, t = torch.randn(2, *SHAPE), torch.full((2,), 0.3)
    with torch.no_grad():
        assert torch.equal(flat(x, t), nested(x, t))


def test_discrete_process_table():
    """t = (k + 1)/T sits on timestep k; t = 0 is the data; the derivatives are those of the interpolation."""
    abar = torch.linspace(0.99, 0.01, 10)
    process = DiscreteDiffusion(abar)
    t = torch.tensor([0.0, 0.1, 0.5, 1.0])
    alpha, sigma, _, _ = process.coefficients(t)
    torch.testing.assert_close(alpha ** 2, torch.tensor([1.0, 0.99, abar[4].item(), 0.01]))
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones(4))
    mid, h = torch.tensor([0.43]), 1e-3
    _, _, d_alpha, d_sigma = process.coefficients(mid)
    a_hi, s_hi, _, _ = process.coefficients(mid + h)
    a_lo, s_lo, _, _ = process.coefficients(mid - h)
    torch.testing.assert_close(d_alpha, (a_hi - a_lo) / (2 * h), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(d_sigma, (s_hi - s_lo) / (2 * h), rtol=1e-3, atol=1e-4)


# ---- bad input: one clear error each ---------------------------------------------------------


def test_a_folder_without_a_scheduler_config_is_refused(tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="no scheduler config.*scheduler.save_pretrained"):
        load_diffusers_model(f"diffusers:{tmp_path}", SHAPE, 0, 1.0)


def test_a_missing_folder_and_a_folder_without_a_unet_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_diffusers_model(f"diffusers:{tmp_path / 'nowhere'}", SHAPE, 0, 1.0)
    with pytest.raises(ConfigError, match="not a diffusers model folder"):
        load_diffusers_model(f"diffusers:{tmp_path}", SHAPE, 0, 1.0)


def test_an_unknown_scheduler_class_is_refused(tmp_path):
    folder = save_folder(tmp_path, "ddpm")
    edit_config(folder / "scheduler" / "scheduler_config.json", _class_name="KarrasVeScheduler")
    with pytest.raises(ConfigError, match="unknown scheduler class 'KarrasVeScheduler'.*DDPMScheduler"):
        load_diffusers_model(f"diffusers:{folder}", SHAPE, 0, 1.0)


def test_an_unsupported_prediction_type_is_refused(tmp_path):
    folder = save_folder(tmp_path, "ddpm")
    edit_config(folder / "scheduler" / "scheduler_config.json", prediction_type="flow_prediction")
    with pytest.raises(ConfigError, match="prediction_type 'flow_prediction' is not supported.*epsilon"):
        load_diffusers_model(f"diffusers:{folder}", SHAPE, 0, 1.0)


def test_a_text_conditioned_unet_is_refused(tmp_path):
    folder = save_folder(tmp_path, "ddpm")
    edit_config(folder / "unet" / "config.json", _class_name="UNet2DConditionModel")
    with pytest.raises(ConfigError, match="UNet2DConditionModel.*UNet2DModel"):
        load_diffusers_model(f"diffusers:{folder}", SHAPE, 0, 1.0)


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 8, 8), (64,)])
def test_images_of_another_size_or_channel_count_are_refused(tmp_path, shape):
    folder = save_folder(tmp_path, "ddpm")
    with pytest.raises(ConfigError, match=r"takes images of 1×8×8 .* but the data's are"):
        load_diffusers_model(f"diffusers:{folder}", shape, 0, 1.0)


def test_class_conditioning_must_match_the_unet(tmp_path):
    plain = save_folder(tmp_path / "plain", "flow")
    with pytest.raises(ConfigError, match="no class embedding"):
        load_diffusers_model(f"diffusers:{plain}", SHAPE, 10, 1.0)
    conditional = save_folder(tmp_path / "conditional", "flow", num_class_embeds=10)
    with pytest.raises(ConfigError, match="is class-conditional"):
        load_diffusers_model(f"diffusers:{conditional}", SHAPE, 0, 1.0)
    with pytest.raises(ConfigError, match="has 10 class embeddings, but the data has 4 classes"):
        load_diffusers_model(f"diffusers:{conditional}", SHAPE, 4, 1.0)
    with pytest.raises(ConfigError, match="cfg_scale 3.0 needs a null class"):
        load_diffusers_model(f"diffusers:{conditional}", SHAPE, 10, 3.0)
    assert load_diffusers_model(f"diffusers:{conditional}", SHAPE, 10, 1.0).net.null_label is None
    assert load_diffusers_model(f"diffusers:{conditional}", SHAPE, 9, 3.0).net.null_label == 9


def test_a_recipe_leaves_what_the_folder_says_to_the_folder():
    tree = {"name": "t", "task": "steps", "data": {"name": "digits"}, "method": {"name": "progressive"},
            "teacher": {"model": "diffusers:my_folder", "prediction": "eps"}}
    with pytest.raises(ConfigError, match="scheduler\\s+config says the process, prediction and clipping; remove prediction"):
        load_recipe(tree)
    tree["teacher"] = {"model": "diffusers:my_folder", "solver": "ddim"}
    assert load_recipe(tree).teacher.model == "diffusers:my_folder"
