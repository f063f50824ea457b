-- Runs once, when the PostgreSQL volume is first initialised: MLflow gets its own database, so its
-- tables (experiments, runs, datasets, ...) never meet the platform's.
CREATE DATABASE mlflow;
