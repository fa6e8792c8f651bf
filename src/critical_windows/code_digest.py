"""The digest of the code a workflow stage runs: its script and every package module that the
script imports, directly or through other modules (function-level imports included), with
the templates those modules read.

Each rule passes `stage_code(script)` as its `code` param, so editing any module a stage
really uses re-runs it, and editing any other does not. The imports are read from the
source with `ast`, without importing anything: the Snakefile calls this when it is parsed.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
NAME = PACKAGE.name


def _module_file(dotted: str, package: Path) -> Path | None:
    """The source file of the module `dotted` of `package` (a package: its __init__.py)."""
    parts = dotted.split(".")
    if parts[0] != NAME:
        return None
    base = package.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _packages_of(dotted: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`]: the packages whose __init__ runs before `a.b.c`."""
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def _direct_imports(path: Path, package: Path) -> frozenset[str]:
    """Modules of `package` that the file at `path` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import x`: x is a module of pkg or a name defined in pkg
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if _module_file(name, package) is not None:
                found.add(name)
                found.update(p for p in _packages_of(name) if _module_file(p, package))
    return frozenset(found)


def imported_modules(script: str | Path, package: Path = PACKAGE) -> list[Path]:
    """Every source file of `package` that `script` imports, transitively, in a stable
    order, with the template files of the modules that read them (those that declare
    `TEMPLATES`, the `templates/` folder beside them)."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    package = Path(package).resolve()
    while todo:
        for name in _direct_imports(todo.pop(), package):
            path = _module_file(name, package)
            if path is not None and path not in seen:
                seen.add(path)
                todo.append(path)
    templates = {t for p in seen if _reads_templates(p) for t in (p.parent / "templates").glob("*")}
    return sorted(seen | {t for t in templates if t.is_file()})


@cache
def _reads_templates(path: Path) -> bool:
    """Whether the module declares `TEMPLATES`: it reads the files of `templates/` beside it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "TEMPLATES" for t in node.targets)
        for node in tree.body
    )


def stage_code(script: str | Path, package: Path = PACKAGE) -> str:
    """Digest of `script` and of the modules of `package` it imports (`imported_modules`).
    The workflow passes its own checkout's package, whichever copy Python would import."""
    digest = hashlib.sha256()
    script, package = Path(script).resolve(), Path(package).resolve()
    named = [(script.name, script)]
    named += [(str(p.relative_to(package.parent)), p) for p in imported_modules(script, package)]
    for name, path in named:  # names, not absolute paths: the same digest in any checkout
        digest.update(f"{name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
