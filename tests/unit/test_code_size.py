"""Size limits of the server code: no function over 60 lines, no module over 400 (migrations excepted).

Past those sizes a function or a module mixes use cases; split it into named steps instead
(STYLE.md, "God modules and god functions").
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("platform_core", "api", "worker")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """From the first decorator to the last line of the body, as a reader sees the function."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    assert node.end_lineno is not None
    return node.end_lineno - first + 1


def test_the_walk_finds_the_packages() -> None:
    names = {p.relative_to(ROOT).parts[0] for p in _modules()}
    assert names == set(PACKAGES)


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for path in _modules():
        for node in _functions(ast.parse(path.read_text(), filename=str(path))):
            if (n := function_lines(node)) > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_no_module_is_longer_than_400_lines() -> None:
    long = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split these by use case:\n" + "\n".join(long)


def test_the_measure_counts_decorators_and_body() -> None:
    source = "@decorator\ndef f():\n" + "    x = 1\n" * 60
    (node,) = _functions(ast.parse(source))
    assert function_lines(node) == 62
