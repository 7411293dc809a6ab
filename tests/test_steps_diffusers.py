"""Step and score distillation from a diffusers folder (issue 27): recipes run from the folder, the students
are written back as diffusers folders that diffusers' own pipelines load and sample exactly as distill's
samplers do, ``distill export`` still works, and methods that need distill's own networks are refused
before anything trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers_fixtures import save_folder

from distill.cli import main
from distill.data.generative import load_generative_data
from distill.diffusion.diffusers_student import save_diffusers_student
from distill.diffusion.sampling import OdeGenerator
from distill.diffusion.teacher import build_diffusion_model
from distill.errors import ConfigError
from distill.experiment import Run, get_task, load_recipe
from distill.tasks.steps.methods.consistency import Consistency
from distill.tasks.steps.methods.reflow import Reflow
from distill.tasks.steps.task import StepsTask

diffusers = pytest.importorskip("diffusers")

TINY_EVAL = {"samples": 40, "teacher_steps": [1], "bootstrap": 0,
             "classifier": {"options": {"channels": [4, 4, 4]}, "train": {"steps": 3, "epochs": None,
                                                                          "batch_size": 32, "progress": False}}}


def steps_recipe(folder, method: dict, solver: str = "ddim", **teacher) -> dict:
    return {"name": "t", "task": "steps", "data": {"name": "digits"},
            "teacher": {"model": f"diffusers:{folder}", "solver": solver, "steps": 4, **teacher},
            "method": method, "train": {"steps": 2, "epochs": None, "batch_size": 16, "progress": False},
            "evaluate": TINY_EVAL}


def run(tree: dict, folder):
    recipe = load_recipe(tree)
    get_task(recipe.task).run(recipe, Run(folder, recipe))
    return recipe, json.loads((folder / "results.json").read_text())


def distill_samples(run_folder, recipe, steps: int, noise: torch.Tensor) -> torch.Tensor:
    """The run's student at ``steps`` restored from the run folder, sampling ``noise``, in [0, 1] as the
    pipelines return images."""
    generators, _, _ = StepsTask()._generators(run_folder, recipe, None)
    return (generators[steps].sample(noise, None, steps) / 2 + 0.5).clamp(0, 1)


def test_progressive_students_of_a_ddpm_folder_sample_alike_in_diffusers(tmp_path):
    folder = save_folder(tmp_path / "teacher", "ddpm", prediction_type="v_prediction")
    method = {"name": "progressive", "options": {"start_steps": 4, "final_steps": 2}}
    recipe, results = run(steps_recipe(folder, method), tmp_path / "run")
    teacher = results["details"]["teacher"]
    assert teacher["given"] == f"diffusers:{folder}" and teacher["prediction"] == "v"
    assert teacher["process"] == "DiscreteDiffusion" and not (tmp_path / "run" / "teacher").exists()
    assert list(results["details"]["diffusers_students"]) == ["2"]
    student = tmp_path / "run" / "diffusers" / "2_steps"
    note = json.loads((student / "distill_sampler.json").read_text())
    assert note["pipeline"] == "DDIMPipeline" and note["same_as_distill"] and note["steps"] == 2
    pipeline = diffusers.DDIMPipeline.from_pretrained(student)
    assert pipeline.scheduler.config.timestep_spacing == "trailing"
    images = pipeline(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=2,
                      output_type="pt").images
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(images, distill_samples(tmp_path / "run", recipe, 2, noise), rtol=0, atol=1e-5)
    # the student differs from the teacher: training moved it
    teacher_unet = diffusers.UNet2DModel.from_pretrained(folder / "unet")
    assert any(not torch.equal(a, b) for a, b in zip(teacher_unet.state_dict().values(),
                                                     pipeline.unet.state_dict().values()))
    # distill export still traces the few-step sampler around the diffusers UNet
    assert main(["export", str(tmp_path / "run"), "--format", "torchscript", "--out", str(tmp_path / "x.pt")]) == 0
    traced = torch.jit.load(str(tmp_path / "x_2step.pt"))
    noise = torch.randn(3, 1, 8, 8)
    generators, _, _ = StepsTask()._generators(tmp_path / "run", recipe, None)
    torch.testing.assert_close(traced(noise), generators[2].sample(noise, None, 2), rtol=1e-5, atol=1e-5)


def test_euler_students_of_a_flow_folder_sample_alike_in_diffusers(tmp_path):
    """An Euler sampler on a flow UNet (what reflow students use) is written as a DDPMPipeline folder whose
    FlowMatchEulerDiscreteScheduler steps on distill's uniform σ grid."""
    folder = save_folder(tmp_path / "teacher", "flow", pipeline=False)
    model = build_diffusion_model(load_recipe(steps_recipe(folder, {"name": "reflow"})).teacher,
                                  load_generative_data("digits"))
    generator = OdeGenerator(model, "euler")
    for steps in (1, 3):
        student = save_diffusers_student(model, generator, steps, "reflow", tmp_path / f"{steps}_steps")
        note = json.loads((student / "distill_sampler.json").read_text())
        assert note["pipeline"] == "DDPMPipeline" and note["sampler"] == "euler" and note["same_as_distill"]
        pipeline = diffusers.DDPMPipeline.from_pretrained(student)
        assert type(pipeline.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
        images = pipeline(batch_size=3, generator=torch.Generator().manual_seed(steps), num_inference_steps=steps,
                          output_type="pt").images
        noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(steps))
        torch.testing.assert_close(images, (generator.sample(noise, None, steps) / 2 + 0.5).clamp(0, 1),
                                   rtol=0, atol=1e-5)


def test_reflow_students_of_a_ddpm_folder_are_ddim_pipelines(tmp_path):
    """Reflow from an ε-prediction DDPM folder samples with DDIM (exact on its straightened coupling), so its
    students are written as DDIMPipeline folders that sample as distill does."""
    folder = save_folder(tmp_path / "teacher", "ddpm")
    model = build_diffusion_model(load_recipe(steps_recipe(folder, {"name": "reflow"})).teacher,
                                  load_generative_data("digits"))
    generator = Reflow().generator(model)
    student = save_diffusers_student(model, generator, 2, "reflow", tmp_path / "2_steps")
    assert json.loads((student / "distill_sampler.json").read_text())["pipeline"] == "DDIMPipeline"
    images = diffusers.DDIMPipeline.from_pretrained(student)(batch_size=3, generator=torch.Generator().manual_seed(0),
                                                             num_inference_steps=2, output_type="pt").images
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(images, (generator.sample(noise, None, 2) / 2 + 0.5).clamp(0, 1), rtol=0, atol=1e-5)


def test_dmd2_with_its_gan_head_on_the_unets_middle_block(tmp_path):
    folder = save_folder(tmp_path / "teacher", "flow")
    method = {"name": "dmd", "options": {"gan": 0.1, "fake_updates": 1}}
    _, results = run(steps_recipe(folder, method, solver="euler"), tmp_path / "run")
    logged = (tmp_path / "run" / "dmd" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train_gan" in logged and "train_discriminator" in logged  # the head on unet.mid_block trained
    note = json.loads((tmp_path / "run" / "diffusers" / "1_steps" / "distill_sampler.json").read_text())
    assert note["pipeline"] is None and note["sampler"] == "RenoisingGenerator"


def test_a_student_whose_sampler_diffusers_lacks_is_written_with_a_note(tmp_path):
    """A consistency student samples by re-noising, which no diffusers scheduler reproduces: its folder holds
    the UNet, the teacher's scheduler config and a note naming distill's sampler."""
    folder = save_folder(tmp_path / "teacher", "ddim")
    teacher = build_diffusion_model(load_recipe(steps_recipe(folder, {"name": "consistency"})).teacher,
                                    load_generative_data("digits"))
    student = tmp_path / "student"
    save_diffusers_student(teacher, Consistency().generator(teacher), 2, "consistency", student)
    note = json.loads((student / "distill_sampler.json").read_text())
    assert note == {"method": "consistency", "steps": 2, "sampler": "RenoisingGenerator", "pipeline": None,
                    "call": note["call"], "same_as_distill": False} and "distill eval" in note["call"]
    assert diffusers.UNet2DModel.from_pretrained(student / "unet").config.sample_size == 8
    assert json.loads((student / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "DDIMScheduler"


def test_images_of_another_size_are_refused_before_anything_runs(tmp_path):
    folder = save_folder(tmp_path / "teacher", "ddpm", size=16)
    recipe = load_recipe(steps_recipe(folder, {"name": "progressive", "options": {"start_steps": 4}}))
    with pytest.raises(ConfigError, match="takes images of 1×16×16.*but the data's are 1×8×8.*size: \\[H, W\\]"):
        get_task("steps").run(recipe, Run(tmp_path / "run", recipe))
    assert not [p for p in (tmp_path / "run").iterdir() if p.is_dir()]


def test_step_conditioned_methods_are_refused_before_anything_runs(tmp_path):
    folder = save_folder(tmp_path / "teacher", "flow")
    recipe = load_recipe(steps_recipe(folder, {"name": "shortcut", "options": {"min_step": 4}}, solver="euler"))
    with pytest.raises(ConfigError, match="step-conditioned student.*Pick progressive"):
        get_task("steps").run(recipe, Run(tmp_path / "run", recipe))
    assert not [p for p in (tmp_path / "run").iterdir() if p.is_dir()]


def test_score_distillation_from_a_diffusers_prior(tmp_path):
    """VSD on a class-conditional flow prior with guidance: the prior's UNet guides the particles and a copy
    of it (the online score) trains beside them."""
    guidance = "vsd"
    folder = save_folder(tmp_path / "prior", "flow", num_class_embeds=11)
    tree = {"name": "t", "task": "score", "data": {"name": "digits"},
            "prior": {"model": f"diffusers:{folder}", "conditional": True, "cfg_scale": 2.0, "solver": "euler",
                      "steps": 2},
            "guidance": {"name": guidance}, "object": {"kind": "points", "count": 10},
            "train": {"steps": 3, "batch_size": 5, "progress": False},
            "evaluate": {"classifier": TINY_EVAL["classifier"]}}
    _, results = run(tree, tmp_path / "run")
    assert results["details"]["prior"]["given"] == f"diffusers:{folder}"
    assert results["rows"][-1]["model"] == guidance
    particles = torch.from_numpy(np.load(tmp_path / "run" / "particles.npz")["particles"])
    initial = 1.0 * torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert particles.shape == (10, 1, 8, 8) and not torch.allclose(particles, initial)  # the guidance moved them


def test_a_score_scene_refuses_a_diffusers_prior(tmp_path):
    tree = {"name": "t", "task": "score", "views": {"meshes": ["cow"]}, "prior": {"model": "diffusers:somewhere"},
            "guidance": {"name": "sds"}, "object": {"kind": "gaussians"}}
    with pytest.raises(ConfigError, match="view-conditioned prior"):
        load_recipe(tree)
