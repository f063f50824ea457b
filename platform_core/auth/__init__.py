"""Projects, API keys, scopes and the audit trail."""
