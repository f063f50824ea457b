"""The API's list shape is the domain's one cursor page; it lives in platform_core.pagination (services
return it too) and is re-exported here for routers."""

from __future__ import annotations

from platform_core.pagination import Page

__all__ = ["Page"]
