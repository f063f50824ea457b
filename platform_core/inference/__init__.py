"""Serving: shared base models with many LoRA adapters, micro-batching, preprocessing, explanations."""
