"""Make the diffusers folder a user would bring: a small ``UNet2DModel`` trained on the 8×8 digits with
diffusers' own scheduler, the way diffusers' unconditional training example trains one, saved with
``DDPMPipeline.save_pretrained`` — the teacher of ``recipes/steps/diffusers_progressive.yaml`` and the
prior of ``recipes/score/diffusers_sds.yaml`` (issue 27).

    .venv/bin/python benchmarks/diffusers_teacher.py                       # DDPM, ε-prediction
    .venv/bin/python benchmarks/diffusers_teacher.py --scheduler flow --out teachers/digits_flow

``ddpm``: DDPMScheduler (linear β, 1,000 steps), the loss ``‖ε̂(add_noise(x, ε, k), k) − ε‖²`` at uniform k;
``flow``: FlowMatchEulerDiscreteScheduler, ``‖v̂(x_σ, σ·T) − (ε − x)‖²`` at σ = the scheduler's sigmas at
uniform index. The images are the digits rescaled to [−1, 1] as distill's generative loader does. Prints
the final loss and writes it with the settings to ``<out>/training.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from distill.data.generative import load_generative_data


def build_unet(diffusers, channels: int, size: int):
    """Two resolution levels, the lower with attention: about 1.0 M weights (on 1×8×8 images)."""
    return diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                 block_out_channels=(32, 64), layers_per_block=2, norm_num_groups=8,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def loss_of(unet, scheduler, x: torch.Tensor, flow: bool) -> torch.Tensor:
    noise = torch.randn_like(x)
    index = torch.randint(scheduler.config.num_train_timesteps, (len(x),))
    if flow:
        sigma = scheduler.sigmas[index].view(-1, 1, 1, 1)
        noisy, target, timesteps = (1 - sigma) * x + sigma * noise, noise - x, scheduler.timesteps[index]
    else:
        noisy, target, timesteps = scheduler.add_noise(x, noise, index), noise, index
    return (unet(noisy, timesteps).sample - target).pow(2).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="teachers/digits_ddpm")
    parser.add_argument("--scheduler", choices=["ddpm", "flow"], default="ddpm")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import diffusers

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_generative_data("digits").train.x
    unet = build_unet(diffusers, data.shape[1], data.shape[2])
    flow = args.scheduler == "flow"
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler() if flow else diffusers.DDPMScheduler()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    started, recent = time.perf_counter(), []
    for step in range(args.steps):
        loss = loss_of(unet, scheduler, data[torch.randint(len(data), (args.batch_size,))], flow)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-100:]
        if (step + 1) % 500 == 0:
            print(f"step {step + 1}: loss {sum(recent) / len(recent):.4f}")
    out = Path(args.out)
    diffusers.DDPMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(out)
    record = {**vars(args), "final_loss": sum(recent) / len(recent), "seconds": time.perf_counter() - started}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"| scheduler | steps | final loss | seconds |\n|---|---|---|---|\n| {args.scheduler} | {args.steps} | "
          f"{record['final_loss']:.4f} | {record['seconds']:.0f} |\nsaved {out}")


if __name__ == "__main__":
    main()
