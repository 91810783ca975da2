"""Every ```python block of the docs/ pages runs as written (blocks of a page share one namespace)."""
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text())


def blocks(page):
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)


def test_the_workflow_pages_exist():
    names = {p.name for p in PAGES}
    assert {"search.md", "dqm.md", "generator-validation.md"} <= names
    assert all(len(blocks(p)) >= 2 for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_runs(page, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)                         # files the examples write land here
    namespace = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(blocks(page)):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
