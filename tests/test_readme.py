"""The README's runnable snippets run as they are: every ``python`` block of the sections that say so."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: README sections (headings) whose python blocks are complete programs; a section ends at the next heading of
#: its level or above.
RUNNABLE = ("## Training as you write it", "### Search from Python")


def _snippets() -> list[tuple[str, str]]:
    text = README.read_text()
    out = []
    for heading in RUNNABLE:
        start = text.index(heading)
        level = heading.split(" ")[0]
        ends = [text.find("\n" + "#" * n + " ", start + len(heading)) for n in range(2, len(level) + 1)]
        end = min((e for e in ends if e > 0), default=-1)
        section = text[start:end if end > 0 else None]
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", section, re.S)):
            out.append((f"{heading.lstrip('# ')[:24]}-{i}", block))
    return out


def test_the_runnable_sections_have_snippets():
    assert len(_snippets()) >= 3


@pytest.mark.parametrize("name, code", _snippets(), ids=[n for n, _ in _snippets()])
def test_readme_snippet_runs(name, code):
    exec(compile(code, f"README.md:{name}", "exec"), {"__name__": "__readme__"})
