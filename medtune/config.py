"""Where the SDK finds its server and key: arguments, then MEDTUNE_URL / MEDTUNE_API_KEY, then the file
`medtune login` wrote (0600, in the user's config dir), then the local default."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
CONFIG_NAME = "config.json"


def config_dir() -> Path:
    if override := os.environ.get("MEDTUNE_CONFIG_DIR"):
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "medtune"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "medtune"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "medtune"


def config_path() -> Path:
    return config_dir() / CONFIG_NAME


@dataclass(frozen=True)
class Login:
    url: str
    api_key: str | None


def load_login() -> Login | None:
    path = config_path()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not raw.get("url"):
        return None
    return Login(url=str(raw["url"]), api_key=raw.get("api_key"))


def save_login(url: str, api_key: str) -> Path:
    """Write the login readable by its owner only: the key is a bearer credential."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "api_key": api_key}, fh)
    os.replace(tmp, path)
    os.chmod(path, 0o600)
    return path


def remove_login() -> bool:
    path = config_path()
    if path.exists():
        path.unlink()
        return True
    return False


def resolve(base_url: str | None, api_key: str | None) -> Login:
    stored = load_login() if not (base_url or os.environ.get("MEDTUNE_URL")) else None
    url = base_url or os.environ.get("MEDTUNE_URL") or (stored.url if stored else None) or DEFAULT_URL
    if api_key is None:
        api_key = os.environ.get("MEDTUNE_API_KEY") or None
    if api_key is None:
        stored = stored or load_login()
        # A stored key belongs to the server it was stored with; never send it elsewhere.
        if stored and stored.url.rstrip("/") == url.rstrip("/"):
            api_key = stored.api_key
    return Login(url=url.rstrip("/"), api_key=api_key)
