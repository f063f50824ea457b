"""The inference tier: `medtune serve`, the serving engine behind HTTP for the deployed mode."""
