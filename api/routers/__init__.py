"""Routers: parse, call a platform_core service, shape the response."""
