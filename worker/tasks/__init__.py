"""Thin tasks: ids in, a platform_core service does the work."""
