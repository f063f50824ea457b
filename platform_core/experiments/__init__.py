"""Data-volume experiments: one model trained on nested subsets of a split's training part, per size and
seed, as ordinary fine-tuning jobs; their test metrics by size, fits and figures."""
