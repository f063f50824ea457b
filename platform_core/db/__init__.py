"""Database plumbing: the declarative base, engines and sessions."""
