"""Distillation families: each adds its objectives, metrics and report sections to the shared engine."""
