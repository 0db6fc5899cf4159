"""Every README snippet runs, in order, on a fresh workspace.

The README's fenced blocks are extracted in order. Every ```python block runs in one shared
namespace, in a temporary directory holding a copy of the built-in plugins (as a user's project
would), so `./demo.keel` is a fresh workspace. A block that cannot run (shell, output shown as an
example) carries a `<!-- not-run: why -->` marker on the line before its fence and is reported as
skipped with that reason; a non-python block without the marker fails, so nothing is left out
silently. Each block is its own test item named after its section and line, so a failure names the
snippet that broke.
"""

from __future__ import annotations

import os
import re
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run(?::\s*(?P<why>.*?))?\s*-->\s*$")


@dataclass
class Snippet:
    line: int          # 1-based line of the opening fence
    section: str       # the nearest heading above it
    lang: str
    code: str
    not_run: str | None  # the marker's reason, None when the block is meant to run

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-") or "top"
        return f"L{self.line}-{slug}"


def extract(text: str) -> list[Snippet]:
    """Fenced blocks in order, with their section and any not-run marker just above the fence."""
    out: list[Snippet] = []
    lines = text.splitlines()
    section, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        m = _FENCE.match(line)
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"README.md line {start + 1}: a code fence is never closed")
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_RUN.match(prev.strip())
        out.append(Snippet(start + 1, section, m.group(1), "\n".join(body) + "\n",
                           (marker.group("why") or "no reason given") if marker else None))
        i += 1
    return out


SNIPPETS = extract(README.read_text())


def test_extractor_reads_markers_sections_and_order():
    text = ("# A\n```python\nx = 1\n```\n## B\n<!-- not-run: shell -->\n\n```sh\nmake\n```\n"
            "<!-- not-run -->\n```python\n...\n```\n")
    got = extract(text)
    assert [(s.line, s.section, s.lang, s.not_run) for s in got] == [
        (2, "A", "python", None), (8, "B", "sh", "shell"), (12, "B", "python", "no reason given")]
    assert got[0].code == "x = 1\n"
    with pytest.raises(AssertionError, match="line 2: a code fence is never closed"):
        extract("text\n```python\nx = 1\n")


def test_every_block_either_runs_or_says_why_not():
    """A block the test would not run must say so in the README, with a reason."""
    unmarked = [s.id for s in SNIPPETS if s.lang != "python" and s.not_run is None]
    assert not unmarked, f"README blocks that are not python and not marked <!-- not-run: why -->: {unmarked}"
    vague = [s.id for s in SNIPPETS if s.not_run == "no reason given"]
    assert not vague, f"README not-run markers without a reason: {vague}"
    assert sum(s.lang == "python" and s.not_run is None for s in SNIPPETS) >= 10


@pytest.fixture(scope="module")
def readme_env(tmp_path_factory):
    """One namespace and one fresh directory (with plugins/) for all snippets, in README order."""
    workdir = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "plugins", workdir / "plugins")
    old_cwd = os.getcwd()
    old_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"   # plots draw off-screen
    os.chdir(workdir)
    state = {"namespace": {"__name__": "readme"}, "failed": None, "workdir": workdir}
    yield state
    os.chdir(old_cwd)
    if old_backend is None:
        os.environ.pop("MPLBACKEND", None)
    else:
        os.environ["MPLBACKEND"] = old_backend
    import matplotlib.pyplot as plt
    plt.close("all")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_readme_snippet(snippet: Snippet, readme_env):
    if snippet.not_run is not None:
        pytest.skip(f"README.md line {snippet.line} is marked not-run: {snippet.not_run}")
    if snippet.lang != "python":
        pytest.fail(f"README.md line {snippet.line} ({snippet.lang or 'no language'}) is not python "
                    "and has no <!-- not-run: why --> marker")
    if readme_env["failed"]:
        pytest.skip(f"an earlier snippet failed ({readme_env['failed']}); later ones build on it")
    assert (readme_env["workdir"] / "plugins").is_dir()
    error = None
    try:
        code = compile(snippet.code, f"README.md:{snippet.line} ({snippet.section})", "exec")
        exec(code, readme_env["namespace"])  # noqa: S102 - the README is ours
    except Exception as err:  # noqa: BLE001 - report which snippet broke, then fail
        error = "".join(traceback.format_exception(type(err), err, err.__traceback__.tb_next))
    if error is not None:
        readme_env["failed"] = snippet.id
        pytest.fail(f"README snippet at line {snippet.line} (section '{snippet.section}') failed:\n"
                    f"{snippet.code}\n{error}", pytrace=False)
