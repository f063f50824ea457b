"""Print one extra's requirements from pyproject.toml, less the named distributions: the API image
installs the server extra without the torch stack, which only the worker and inference images carry."""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def name_of(requirement: str) -> str:
    """The distribution name a requirement line names, normalised as PEP 503 does."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(extra: str, without: set[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"][extra]]
    unknown = without - {name_of(line) for line in lines}
    if unknown:
        # A renamed dependency must not slip into the image unnoticed.
        raise SystemExit(f"not requirements of {extra}: {sorted(unknown)}")
    return [line for line in lines if name_of(line) not in without]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("extra")
    parser.add_argument("--without", default="", help="comma-separated distribution names")
    args = parser.parse_args()
    without = {name_of(n) for n in args.without.split(",") if n}
    sys.stdout.write("".join(f"{line}\n" for line in requirements(args.extra, without)))


if __name__ == "__main__":
    main()
