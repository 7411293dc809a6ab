"""Few-step students of a diffusers teacher written the way the teacher came: a diffusers folder per
step count, with the scheduler whose loop is the student's sampler where diffusers has one.

- DDIM on a DDPM-family teacher → ``DDIMScheduler`` with ``timestep_spacing: trailing`` and
  ``set_alpha_to_one: true`` (what distill's uniform DDIM grid is, exactly when the step count
  divides ``num_train_timesteps``), saved as a ``DDIMPipeline`` folder;
- Euler (or DDIM, the same step) on a flow-matching teacher → ``FlowMatchEulerDiscreteScheduler``
  with ``shift_terminal`` 1/steps (which spaces σ uniformly, as distill's grid), saved as a
  ``DDPMPipeline`` folder (its loop only calls ``scheduler.step``);
- any other sampler (re-noising consistency / DMD sampling, Heun) → the UNet and the teacher's
  scheduler config, with a note that names distill's sampler.

Every folder holds ``distill_sampler.json``: the method, the step count, the sampler and how to call it.
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.diffusers_folder import INSTALL, DiffusersNet
from distill.diffusion.process import DiscreteDiffusion, FlowProcess
from distill.diffusion.sampling import OdeGenerator
from distill.errors import ConfigError
from distill.models.libraries import import_library

SAMPLER_NOTE = "distill_sampler.json"
#: scheduler options that would move the flow grid off distill's uniform one
_FLOW_GRID = {"shift": 1.0, "use_dynamic_shifting": False, "use_karras_sigmas": False, "use_exponential_sigmas": False,
              "use_beta_sigmas": False, "invert_sigmas": False, "stochastic_sampling": False}


def save_diffusers_student(student: Denoiser, generator, steps: int, method: str, folder: Path) -> Path:
    """Write ``student`` (whose network is a :class:`DiffusersNet`) sampled by ``generator`` in ``steps``
    steps as a diffusers folder at ``folder``; the folder."""
    net = student.net
    if not isinstance(net, DiffusersNet):
        raise ConfigError(f"only students of a diffusers teacher are written as diffusers folders; this one's network "
                          f"is a {type(net).__name__}.")
    diffusers = import_library("diffusers", INSTALL, "diffusers students")
    solver = generator.solver if isinstance(generator, OdeGenerator) and generator.denoiser is student else None
    config = {key: value for key, value in net.scheduler.items() if not key.startswith("_")}
    folder = Path(folder)
    note = {"method": method, "steps": steps}
    if solver == "ddim" and isinstance(student.process, DiscreteDiffusion):
        clip = {"clip_sample": student.clip is not None, "clip_sample_range": student.clip or 1.0}
        scheduler = diffusers.DDIMScheduler.from_config(config, timestep_spacing="trailing", set_alpha_to_one=True,
                                                        steps_offset=0, thresholding=False, **clip)
        diffusers.DDIMPipeline(unet=net.unet, scheduler=scheduler).save_pretrained(folder)
        exact = student.process.num_timesteps % steps == 0
        note |= {"sampler": "ddim", "pipeline": "DDIMPipeline",
                 "call": f"DDIMPipeline.from_pretrained(folder)(num_inference_steps={steps}, eta=0.0"
                         f"{', use_clipped_model_output=True' if student.clip is not None else ''})",
                 "same_as_distill": exact}
    elif solver in ("ddim", "euler") and isinstance(student.process, FlowProcess):
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(
            config, shift_terminal=1.0 / steps if steps > 1 else None, **_FLOW_GRID)
        diffusers.DDPMPipeline(unet=net.unet, scheduler=scheduler).save_pretrained(folder)
        note |= {"sampler": "euler", "pipeline": "DDPMPipeline",
                 "call": f"DDPMPipeline.from_pretrained(folder)(num_inference_steps={steps})", "same_as_distill": True}
    else:
        net.unet.save_pretrained(folder / "unet")
        getattr(diffusers, net.scheduler.get("_class_name")).from_config(config).save_pretrained(folder / "scheduler")
        note |= {"sampler": solver or type(generator).__name__, "pipeline": None,
                 "call": "no diffusers scheduler runs this sampler: sample with distill (distill eval / export on "
                         "the run folder), or load the UNet with UNet2DModel.from_pretrained(folder, subfolder='unet')",
                 "same_as_distill": False}
    if net.conditional:
        note["class_labels"] = ("the UNet is class-conditional: the pipelines above pass no labels, so call "
                                "unet(x, t, class_labels=y) in your own loop"
                                + (f"; label {net.null_label} is the null class" if net.null_label is not None else ""))
    (folder / SAMPLER_NOTE).write_text(json.dumps(note, indent=2) + "\n")
    return folder
