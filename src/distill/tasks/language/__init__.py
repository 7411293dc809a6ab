"""Language-model distillation: a causal LM teacher into a small LM with its tokenizer."""
