"""The `medtune` command line: server commands and client commands over the SDK."""
