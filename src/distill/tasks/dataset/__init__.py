"""Dataset distillation: condense a real training set into a few synthetic images per class."""
