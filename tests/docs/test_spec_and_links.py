"""The repository is self-contained: the specification lives in ``docs/spec/`` (verbatim copies
of the project's ``../shared/spec/``), and every relative link of every Markdown file resolves
inside the repository, ``#anchors`` included (issue 17, point 1)."""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "spec"
SHARED_SPEC = ROOT.parent / "shared" / "spec"
SPEC_FILES = ("clinical-rules.md", "contract.md", "integrations.md", "architecture.md")
SKIPPED_DIRS = {".git", ".venv", "var", "build", "dist", "node_modules", "__pycache__", ".pytest_cache"}

FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.md")
                  if not any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts))


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, with inline code removed."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, INLINE_CODE.sub("", line)))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        found += [(number, m.group(1)) for m in INLINE_LINK.finditer(line)]
        if m := REFERENCE_DEF.match(line):
            found.append((number, m.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        if m := HEADING.match(line):
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where} does not exist")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            problems.append(f"{where}: no heading with that anchor")
    return problems


def test_every_relative_link_of_every_markdown_file_resolves_inside_the_repository():
    files = markdown_files()
    assert ROOT / "README.md" in files and SPEC / "clinical-rules.md" in files
    problems = [problem for path in files for problem in broken_links(path)]
    assert problems == []


def test_the_link_checker_catches_what_a_clone_would_trip_on(tmp_path, monkeypatch):
    """The checker itself: a link out of the repository, a missing file and a missing anchor are
    each reported; a good link, an anchor that exists, a code span and an external URL are not."""
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.md").write_text("# Title\n\n## Time, order and timers (all services)\n")
    page = repo / "README.md"
    page.write_text(
        "[ok](docs/a.md) [anchor](docs/a.md#time-order-and-timers-all-services) [self](#intro)\n"
        "# Intro\n"
        "[out](../shared/spec/x.md) [missing](docs/b.md) [bad anchor](docs/a.md#nope)\n"
        "`[code](../not/a/link.md)` [web](https://example.org/x.md)\n"
        "```\n[fenced](../nope.md)\n```\n"
        "[ref]: docs/missing.md\n")
    (tmp_path / "shared" / "spec").mkdir(parents=True)
    (tmp_path / "shared" / "spec" / "x.md").write_text("x")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", repo)
    problems = broken_links(page)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "../shared/spec/x.md points outside the repository",
        "docs/b.md does not exist",
        "docs/a.md#nope: no heading with that anchor",
        "docs/missing.md does not exist",
    ]


@pytest.mark.parametrize("name", SPEC_FILES)
def test_the_spec_in_docs_is_a_verbatim_copy_of_the_shared_spec(name):
    """Skipped in a user's clone (no ``../shared/spec``); where the project is developed, a copy
    that differs fails: refresh it with ``cp ../shared/spec/*.md docs/spec/``."""
    if not SHARED_SPEC.is_dir():
        pytest.skip(f"{SHARED_SPEC} is absent (a clone of the repository alone)")
    assert (SPEC / name).read_bytes() == (SHARED_SPEC / name).read_bytes(), (
        f"docs/spec/{name} differs from {SHARED_SPEC / name}: cp ../shared/spec/{name} docs/spec/")


def test_no_document_sends_the_reader_outside_the_repository_for_the_spec():
    """Plain-text mentions count too: a newcomer cannot open ``../shared/spec/...`` either."""
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in markdown_files()
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
                 if "shared/spec" in line and p.parent != SPEC and p != Path(__file__)]
    assert offenders == []
