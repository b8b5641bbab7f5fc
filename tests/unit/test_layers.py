"""The top-level packages import each other only along the layers of the architecture.

    worker ──> registry ──> client        verifier: imports none of them
       │           (registry.app and the CLI, its composition roots, start the worker)
       ├──> client
       └──> verifier

Every import statement counts, wherever it is (module level, inside a function, under
``TYPE_CHECKING``): a function-local import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("registry", "worker", "client", "verifier")

# Which packages each package may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "registry": frozenset({"client"}),
    "worker": frozenset({"registry", "client", "verifier"}),
    "client": frozenset(),
    "verifier": frozenset(),
}
# The server's composition roots: they start the worker pool, so they may import it.
COMPOSITION_ROOTS = ("registry.app", "registry.cli")
COMPOSITION_ROOT_IMPORTS = frozenset({"worker"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                # ``from . import x`` in a package's __init__ is relative to the package.
                drop = node.level - 1 if is_package else node.level
                base = base[:len(base) - drop] if drop else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from registry import services`` imports registry.services.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(module: str, imports: set[str]) -> list[str]:
    """The imports of ``module`` that cross the layers the wrong way."""
    own = module.split(".")[0]
    allowed = set(ALLOWED[own])
    if any(_within(module, root) for root in COMPOSITION_ROOTS):
        allowed |= COMPOSITION_ROOT_IMPORTS
    bad = []
    for name in sorted(imports):
        other = name.split(".")[0]
        if other not in PACKAGES or other == own or other in allowed:
            continue
        bad.append(f"{module} imports {name}")
    return bad


def all_modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, module_name(path)


def test_every_package_is_found():
    names = {name for _, name in all_modules()}
    assert set(PACKAGES) <= names
    assert {"registry.app", "worker.pool", "client.registry_client"} <= names


def test_no_import_crosses_the_layers():
    bad = []
    for path, module in all_modules():
        imports = imported_modules(path.read_text(), module, path.name == "__init__.py")
        bad += violations(module, imports)
    assert bad == []


@pytest.mark.parametrize(("module", "source"), [
    ("registry.services.manifests", "from worker.pool import Worker"),
    ("registry.services.manifests", "def f():\n    import worker.remote\n"),
    ("registry.api.rest.models", "from worker import pool"),
    ("verifier.run", "from registry.settings import Settings"),
    ("verifier.run", "import client.ref"),
    ("client.layouts", "from registry.services import RegistryService"),
    ("client.layouts", "from registry import errors"),
    ("client.layouts", "from registry.formats.cards import ModelCard"),
    ("client.download", "import worker"),
])
def test_a_forbidden_import_is_seen(module, source):
    assert violations(module, imported_modules(source, module))


@pytest.mark.parametrize(("module", "source"), [
    ("registry.app", "from worker.pool import Pool"),
    ("registry.cli", "def serve():\n    from worker.pool import Pool\n"),
    ("worker.pool", "from registry.services import RegistryService"),
    ("worker.remote", "from client.ref import Registry\nfrom verifier import Spec"),
    ("registry.services.remote.service", "from client.ref import Registry"),
    ("registry.services.remote", "from .service import RemoteService"),
])
def test_an_allowed_import_passes(module, source):
    assert violations(module, imported_modules(source, module)) == []


def test_relative_imports_are_resolved():
    assert "worker.lease" in imported_modules("from .lease import JobLease", "worker.pool")
    assert "registry.services.remote.items" in imported_modules(
        "from .items import Item", "registry.services.remote", is_package=True)
    assert "registry.db.queue" in imported_modules(
        "from ..db.queue import JobKind", "registry.services", is_package=True)
