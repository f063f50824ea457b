"""Seeded patient-grouped, label-stratified splits of frozen dataset versions; manifests; leakage checks."""
