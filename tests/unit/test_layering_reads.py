"""A domain reads another domain's tables through that domain's repository: no module under
platform_core/<domain>/ names another domain's model class in a query (select, session.get, join, where,
update, delete, insert, ...). Importing it for a type stays allowed (lint-imports lists those imports)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "platform_core"
# Calls that build or run a query; for `get` (session.get) only the entity argument counts.
QUERY_CALLS = {
    "select",
    "get",
    "get_one",
    "join",
    "outerjoin",
    "join_from",
    "select_from",
    "update",
    "delete",
    "insert",
    "query",
    "exists",
    "where",
    "filter",
    "filter_by",
    "having",
    "order_by",
    "group_by",
    "scalar",
    "scalars",
    "execute",
    "with_only_columns",
    "returning",
    "values",
}
# Each exception says why it is one.
ALLOWED = {
    # Erasure removes a dataset's rows from every domain's tables in one transaction, in foreign-key order.
    "erasure/repository.py",
    # The experiments domain is being moved onto the jobs and splits repositories (issue 14, its own task).
    "experiments/repository.py",
    "experiments/service.py",
}


def model_owners() -> dict[str, str]:
    """{model class name: the domain folder whose models.py defines it}."""
    owners: dict[str, str] = {}
    for models in ROOT.glob("*/models.py"):
        if models.parent.name == "db":  # db/models.py only gathers every domain's tables for Alembic
            continue
        for node in ast.parse(models.read_text()).body:
            if isinstance(node, ast.ClassDef):
                owners[node.name] = models.parent.name
    return owners


def _foreign_names(tree: ast.AST, domain: str, owners: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """Names bound to another domain's model classes, and aliases of another domain's models module."""
    classes: dict[str, str] = {}
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("platform_core."):
            for alias in node.names:
                if node.module.endswith(".models") and owners.get(alias.name, domain) != domain:
                    classes[alias.asname or alias.name] = alias.name
                elif alias.name == "models" and node.module.split(".")[1] != domain:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if alias.asname and parts[-1] == "models" and parts[1] not in (domain, "db"):
                    modules.add(alias.asname)
    return classes, modules


def _refers(node: ast.AST, classes: dict[str, str], modules: set[str]) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in classes:
            return classes[sub.id]
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in modules:
            return sub.attr
    return None


def cross_domain_queries(source: str, domain: str, owners: dict[str, str]) -> list[str]:
    """`line: call(Model)` for each query in `source` (a module of `domain`) on another domain's table."""
    tree = ast.parse(source)
    classes, modules = _foreign_names(tree, domain, owners)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in QUERY_CALLS:
            continue
        args = node.args[:1] if name == "get" else [*node.args, *(k.value for k in node.keywords)]
        hit = next((m for a in args if (m := _refers(a, classes, modules))), None)
        if hit:
            found.append(f"{node.lineno}: {name}({hit})")
    return found


def test_no_domain_queries_another_domains_tables() -> None:
    owners = model_owners()
    assert {"Dataset", "Job", "Split", "ModelVersion", "ApiKey"} <= set(owners)
    offences, exempt_seen = [], set()
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        domain = rel.split("/")[0]
        if domain == "db":
            continue
        found = cross_domain_queries(path.read_text(), domain, owners)
        if rel in ALLOWED:
            if found:
                exempt_seen.add(rel)
            continue
        offences += [f"platform_core/{rel}:{f}" for f in found]
    assert not offences, "read these through the owning domain's repository:\n" + "\n".join(offences)
    assert exempt_seen == ALLOWED, f"no longer an exception, drop it from ALLOWED: {ALLOWED - exempt_seen}"


def test_the_check_finds_queries_on_another_domains_tables() -> None:
    owners = model_owners()
    source = """
from platform_core.datasets.models import Dataset, Image
from platform_core.jobs import models as jm
from platform_core.splits.models import Split

def a(session, i): return session.get(Dataset, i)
def b(session): return session.execute(select(Split.id).join(Image, Image.id == Split.id))
def c(session): return session.scalars(select(jm.Job).where(jm.Job.status == "running"))
def d(session, split: Split, dataset: Dataset) -> str: return split.id + dataset.id  # types only
"""
    found = cross_domain_queries(source, "evaluation", owners)
    assert [f.split(":")[0] for f in found].count("6") == 1
    assert any(f.startswith("7: ") for f in found) and any(f.startswith("8: ") for f in found)
    assert not [f for f in found if f.startswith("9: ")]
    # The same queries are the owning domain's own business.
    own = cross_domain_queries(source, "datasets", owners)
    assert own and not [f for f in own if "Dataset" in f or "Image" in f]
