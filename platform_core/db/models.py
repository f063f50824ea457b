"""Imports every domain's tables so Alembic and tests see one complete metadata."""

from platform_core.auth.models import ApiKey, AuditEvent, Project
from platform_core.datasets.models import Dataset, Image, Study, StudyLabel
from platform_core.db.base import Base

__all__ = ["ApiKey", "AuditEvent", "Base", "Dataset", "Image", "Project", "Study", "StudyLabel"]
