"""medtune: the Python SDK (`medtune.Client`) and the `medtune` command line."""

from medtune.client import Client

__all__ = ["Client"]
__version__ = "0.1.0"
