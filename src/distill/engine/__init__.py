"""The training engine every family shares: the Accelerate loop over batches of named tensors, parameter
groups, after-step callbacks, atomic safetensors checkpoints with exact resume, the content-hash cache,
logs and progress. It imports no family."""
