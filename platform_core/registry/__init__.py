"""The model registry: named models, numbered versions with self-describing manifests, aliases."""
