"""The docs against the tree: every module under meshd/ is named somewhere in docs/*.md, and
every module docs/architecture.md's module map names exists.

A module is named by its path (``meshd/mesh/kicks.py``), its dotted name
(``meshd.mesh.kicks``), or in a module table row whose first cell names its package
(``| `meshd/mesh/` (desired, kicks) |`` or ``| `meshd/node/statedir.py`, `permissions.py` |``).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    """The modules under meshd/, as paths relative to the repository (packages' __init__
    and __main__ are their package's)."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "meshd").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )


def _first_cells(text: str) -> list[str]:
    """The first cell of every table row that starts with a `meshd/...` path."""
    return [line.split("|")[1] for line in text.splitlines() if line.startswith("| `meshd/")]


def _word(stem: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w/.*]){re.escape(stem)}(\.py)?(?![\w/])")


def unnamed(modules: list[str], docs: str) -> list[str]:
    """The modules that ``docs`` names nowhere."""
    cells = _first_cells(docs)
    out = []
    for module in modules:
        parts = module.removesuffix(".py").split("/")
        if module in docs or ".".join(parts) in docs:
            continue
        if len(parts) == 2:  # meshd/errors.py
            if f"`{parts[1]}.py`" not in docs:
                out.append(module)
            continue
        package = "/".join(parts[:-1]) + "/"
        if not any(package in cell and _word(parts[-1]).search(cell) for cell in cells):
            out.append(module)
    return out


def missing(modules: list[str], module_map: str) -> list[str]:
    """The names in the module map's first cells that are no module: a `meshd/...` path, or
    a bare name (in parentheses, or `name.py`) that is a module of none of the cell's
    packages."""
    known = set(modules)
    packages = {"/".join(m.split("/")[:-1]) for m in modules} | {"meshd"}
    out = []
    for cell in _first_cells(module_map):
        paths = re.findall(r"`(meshd/[\w/.]+)`", cell)
        for path in paths:
            if path.rstrip("/") not in packages and path not in known:
                out.append(path)
        # The cell's packages: those it names (nested ones too), and those of the files it names.
        in_cell = [p if p in packages else p.rpartition("/")[0] for p in map(_stripped, paths)]
        in_cell = [p for p in dict.fromkeys(in_cell) if p in packages] or ["meshd"]
        names = re.findall(r"`(\w+)\.py`", cell)
        for group in re.findall(r"\(([^)]*)\)", cell):
            names += [n.strip() for n in re.split(r"[,;]", group) if n.strip()]
        for name in names:
            if not any(f"{p}/{name}.py" in known for p in in_cell):
                out.append(f"{name} (in {', '.join(in_cell)})")
    return out


def _stripped(path: str) -> str:
    return path.rstrip("/")


def _docs() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def test_every_module_is_named_in_the_docs() -> None:
    assert unnamed(_modules(), _docs()) == [], (
        "modules named in no docs/*.md: add each to its package's module table "
        "(docs/architecture.md, or docs/daemon.md and docs/mesh.md for those packages)"
    )


def test_every_module_the_module_map_names_exists() -> None:
    module_map = (ROOT / "docs" / "architecture.md").read_text()
    assert missing(_modules(), module_map) == [], (
        "docs/architecture.md's module map names modules that do not exist: fix the map"
    )


def test_the_checks_see_a_module_left_out_and_one_that_is_gone() -> None:
    modules = ["meshd/errors.py", "meshd/mesh/kicks.py", "meshd/mesh/punch.py"]
    docs = "| `meshd/mesh/` (punch) | core | ... |\n`errors.py` is the one tree\n"
    assert unnamed(modules, docs) == ["meshd/mesh/kicks.py"]
    assert unnamed(modules, docs + "`meshd/mesh/kicks.py` shakes hands\n") == []
    assert unnamed(modules, docs + "| `meshd/mesh/` (kicks) | core | ... |\n") == []
    gone = "| `meshd/mesh/` (punch, kicked) | core |\n| `meshd/mesh/paths.py` | core |\n"
    assert missing(modules, gone) == ["kicked (in meshd/mesh)", "meshd/mesh/paths.py"]


def test_the_map_check_reads_nested_packages_and_the_packages_of_named_files() -> None:
    modules = ["meshd/cli/configfile/keys.py", "meshd/cli/logs.py", "meshd/node/statedir.py"]
    modules.append("meshd/node/permissions.py")
    nested = "| `meshd/cli/configfile/` (keys, gone), `meshd/cli/logs.py` | shell |\n"
    assert missing(modules, nested) == ["gone (in meshd/cli/configfile, meshd/cli)"]
    files = "| `meshd/node/statedir.py`, `permissions.py`, `absent.py` | shell |\n"
    assert missing(modules, files) == ["absent (in meshd/node)"]
