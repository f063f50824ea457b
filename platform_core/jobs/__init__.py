"""Fine-tuning jobs: tables, repository, service, schemas, and the run a train worker executes."""
