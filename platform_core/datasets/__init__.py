"""Datasets: ingestion (de-identify, filter, store, pixel cache), labels, counts."""
