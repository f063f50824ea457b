"""The SDK's resources, one module per REST resource, each with a sync and an async class."""
