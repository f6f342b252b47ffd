"""The README's Python snippets run as written: ``>>>`` blocks as doctests (output compared
exactly, up to whitespace), other ```python blocks as scripts, all in one namespace in reading
order, as a reader pasting them into one session would."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_readme_has_python_snippets():
    assert len(blocks()) >= 3


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a snippet that writes files writes them here
    namespace: dict = {"__name__": "readme"}
    parser, flags = doctest.DocTestParser(), doctest.NORMALIZE_WHITESPACE
    for line, code in blocks():
        if ">>>" in code:
            test = parser.get_doctest(code, namespace, f"README.md:{line}", str(README), line)
            runner = doctest.DocTestRunner(optionflags=flags)
            result = runner.run(test, clear_globs=False)
            assert result.failed == 0, f"README.md line {line}: {result.failed} example(s) failed"
            namespace.update(test.globs)  # DocTest works on a copy
        else:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
