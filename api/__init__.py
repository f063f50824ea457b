"""The HTTP face of medtune: FastAPI app, dependencies, routers and the web console."""
