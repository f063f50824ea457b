"""medtune's domain: datasets, de-identification, splits, training, registry and inference."""
