"""The README's Python snippet runs as written, and `foveal score --help` documents the element-file format."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from foveal.cli import build_parser
from foveal.scoring.elements import ELEMENT_KINDS, FORMAT_SUMMARY

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_snippet_runs(tmp_path, monkeypatch):
    # It used to raise NameError: boxes was never defined.
    snippet = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S).group(1)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    assert (tmp_path / "map.png").is_file() and (tmp_path / "overlay.png").is_file()


def test_readme_element_example_parses():
    import json

    from foveal.scoring.elements import parse_elements

    block = re.search(r"```json\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S).group(1)
    spec = parse_elements(json.loads(block), (600, 600))
    assert [e.box for e in spec] == [(400, 520, 150, 44), (18, 18, 120, 42)]


def test_score_help_shows_the_element_format():
    parser = build_parser()
    score = parser._subparsers._group_actions[0].choices["score"]  # noqa: SLF001 - argparse has no public getter
    text = score.format_help()
    assert FORMAT_SUMMARY.splitlines()[0] in text and '"units": "relative"' in text and "x0,y0,x1,y1" in text
    assert all(kind in FORMAT_SUMMARY for kind in ELEMENT_KINDS)


def test_no_help_shows_restructuredtext_markup():
    """calibrate's description is its module docstring, whose ``--by``/``--norms`` reached the terminal as such."""
    def parsers(parser):
        yield parser
        for action in parser._subparsers._group_actions if parser._subparsers else ():  # noqa: SLF001
            for sub in action.choices.values():
                yield from parsers(sub)

    for parser in parsers(build_parser()):
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text, parser.prog


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
def test_what_the_readme_writes_in_the_checkout_is_ignored():
    """scikit-build-core's sdist takes every file git does not ignore: after the README's first command and its
    Python snippet, an sdist built from the checkout shipped out/ (scores, overlay, report), map.png and overlay.png."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    written = [f"{folder.rstrip('/')}/scores.json" for folder in re.findall(r" -o (\S+)", first)]
    written += re.findall(r'"([\w.]+\.png)"', snippet.replace('load_image("examples/creative.png")', ""))
    assert written == ["out/scores.json", "map.png", "overlay.png"]
    for path in written:
        assert subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0, path
