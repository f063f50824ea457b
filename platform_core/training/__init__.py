"""Fine-tuning: the backbone catalog, weights, models (peft), data pipeline, loop, metrics, tracking, jobs."""
