"""The distribution installs one importable name, ``infusion_monitor`` (issue 17, point 11): a
package called ``services`` or ``schemas`` in site-packages would shadow, or be shadowed by, any
other project's of the same name. The repository keeps its ``services/`` and ``schemas/`` folders
(the design card's layout); ``pyproject.toml`` maps them to ``infusion_monitor`` and
``infusion_monitor.schemas``."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"services": "infusion_monitor", "schemas": "infusion_monitor.schemas"}
OLD_MODULE = re.compile(r"(?:-m\s+|python -c .*)(services|schemas)\.\w")


def _python_files() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not {".venv", ".git", "build"} & set(p.relative_to(ROOT).parts)]


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *parts)))
    return found


def test_pyproject_lists_every_package_under_its_one_name():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _packages_on_disk()
    assert config["package-dir"] == {name: folder for folder, name in FOLDERS.items()}


def test_nothing_imports_the_folder_names():
    """Every import of the product, in the code, the tests, the benchmarks and the scripts it
    runs, uses ``infusion_monitor``: ``services.x`` would load a second copy of a module (or fail
    where the repository is not on the path)."""
    bad = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # scripts run with -c / -m
                names = [m.group(1) for m in re.finditer(r"from\s+((?:services|schemas)[\w.]*)\s+import\b", node.value)]
                names += [m.group(1) for m in re.finditer(r"(?m)^\s*import\s+((?:services|schemas)\b[\w.]*)", node.value)]
                names += [m.group(1) for m in re.finditer(r"-m\s+((?:services|schemas)\.\w+)", node.value)]
            bad += [f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}: {n}" for n in names
                    if n.split(".")[0] in FOLDERS]
    assert bad == []


def test_the_docs_run_modules_by_their_installed_name():
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("deploy/**/*.md"),
                                                 ROOT / "Dockerfile", ROOT / "docker-compose.yml"]
           for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
           if re.search(r"-m\s+(services|schemas)\.", line)]
    assert bad == []


def test_outside_the_repository_only_infusion_monitor_is_importable():
    code = ("import importlib.util as u, infusion_monitor.cli.main, infusion_monitor.schemas.inbound;"
            "print(u.find_spec('services'), u.find_spec('schemas'))")
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["None", "None"]


@pytest.mark.integration
def test_the_wheel_holds_infusion_monitor_only(tmp_path):
    """Built as pip builds it for an install (isolated, from pyproject.toml), from a copy of the
    sources: an earlier build's leftovers in the repository's build/ would be packed too."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                    "-w", str(tmp_path), str(source)], check=True, timeout=600, capture_output=True)
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"infusion_monitor"}
    for needed in ("infusion_monitor/schemas/asyncapi.json", "infusion_monitor/board/templates/board.html",
                   "infusion_monitor/cli/main.py"):
        assert needed in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "infusion-monitor = infusion_monitor.cli.main:main" in entry_points
