"""The repository runs on a fresh clone with nothing beside it.

The reference files it needs are copies inside it, checked against the published hashes
(kept here, not read from the folder's README, so editing both at once is caught), and no
tracked file names a path outside the repository: a sibling `../shared` folder, a
`Path(__file__).parents[n]` that climbs above the root, or an absolute `/work/` path of the
machine the project was written on.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks.reference_configs import REFERENCE_DIR

ROOT = Path(__file__).resolve().parents[1]
# google/gemma-4-E2B-it at 3e22461f, google/gemma-4-E4B-it at ee0ef602 (the generation
# config is the same file in both).
PUBLISHED_SHA256 = {
    "gemma-4-E2B-it.config.json": "1b28f3d2c3100f6c594754b81107428bd7b822a7f48272ca681dae9d2ec38330",
    "gemma-4-E4B-it.config.json": "33b10c02df3c2e8536cf323d29d53262aaa2f4d11dbe19bc729373fbe90295d4",
    "gemma-4-E2B-E4B-it.generation_config.json": "d4226bbe3117d2d253ba4609720ba82c6c4ce4627a9a6ae05387c78983ac03de",
}
SCANNED_SUFFIXES = {".py", ".md", ".txt", ".ini", ".toml", ".cfg"}
SIBLING = re.compile(r"\.\./shared\b")
ABSOLUTE = re.compile(r"(?<![\w.~-])/work/")
# `Path(__file__)...parents[n]` or `Path(__file__)....parent.parent`, on one line.
PARENTS = re.compile(r"__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent\b)+)")


@pytest.mark.parametrize("name", sorted(PUBLISHED_SHA256))
def test_reference_file_is_the_published_one(name):
    assert hashlib.sha256((REFERENCE_DIR / name).read_bytes()).hexdigest() == PUBLISHED_SHA256[name]


def test_reference_folder_is_inside_the_repository():
    assert REFERENCE_DIR.resolve().is_relative_to(ROOT)


def climbs_above_root(line: str, relative: Path) -> bool:
    """Whether `line` takes a parent of `__file__` above the root; `relative` is the file's path in the repo.

    `Path(__file__).parents[k]` is the root when k is the file's depth (`len(parts) - 1`).
    """
    depth = len(relative.parts) - 1
    levels = [int(k) for k in PARENTS.findall(line)]
    levels += [chain.count(".parent") - 1 for chain in PARENT_CHAIN.findall(line)]
    return any(level > depth for level in levels)


def outside_paths(relative: Path, text: str) -> list[str]:
    """`file:line: text` for every line of one file that names a path outside the repository."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if SIBLING.search(line) or ABSOLUTE.search(line) or climbs_above_root(line, relative):
            found.append(f"{relative}:{number}: {line.strip()}")
    return found


def scanned_files() -> list[Path]:
    """The repository's files (tracked, or new and not ignored) that code or docs are written in."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    paths = [Path(name) for name in listed if (ROOT / name).is_file()]
    own = Path(__file__).resolve().relative_to(ROOT)
    return [p for p in paths if p != own and (p.suffix in SCANNED_SUFFIXES or p.parts[0] == ".ci")]


def test_nothing_reads_a_path_outside_the_repository():
    found = [hit for path in scanned_files() for hit in outside_paths(path, (ROOT / path).read_text(encoding="utf-8"))]
    assert found == []


@pytest.mark.parametrize(
    ("path", "line", "flagged"),
    [
        ("benchmarks/x.py", 'ROOT = Path(__file__).resolve().parents[2] / "shared"', True),
        ("benchmarks/x.py", "ROOT = Path(__file__).resolve().parents[1]", False),
        ("gemma_demo/ui/layout.py", 'EXAMPLES = Path(__file__).resolve().parents[2] / "input"', False),
        ("tests/x.py", "ROOT = Path(__file__).parent.parent.parent", True),
        ("tests/x.py", "ROOT = Path(__file__).resolve().parent.parent", False),
        ("tests/x.md", "copies of `../shared/reference/`", True),
        ("tests/x.md", "cd /work/main && pytest", True),
        ("docs/x.md", "see docs/work/notes.md or https://example.com/work/", False),
    ],
)
def test_the_scan_tells_escapes_from_paths_inside(path, line, flagged):
    assert bool(outside_paths(Path(path), line)) is flagged
