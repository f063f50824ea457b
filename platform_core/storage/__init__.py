"""Object storage behind one protocol; the backend is chosen by the URL's scheme."""

from platform_core.storage.base import ObjectStore, open_store

__all__ = ["ObjectStore", "open_store"]
