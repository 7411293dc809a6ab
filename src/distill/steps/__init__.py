"""Step distillation: many-step diffusion/flow samplers into 1–4 step generators."""
