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
    workflows = [p for p in PAGES if p.name in ("search.md", "dqm.md", "generator-validation.md")]
    assert all(len(blocks(p)) >= 2 for p in workflows)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_runs(page, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)                         # files the examples write land here
    namespace = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(blocks(page)):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's example runs as written."""
    monkeypatch.chdir(tmp_path)
    readme = (DOCS.parent / "README.md").read_text()
    code = re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M)
    assert len(code) == 1 and len(readme.splitlines()) <= 150
    namespace = {"__name__": "readme"}
    exec(compile(code[0], "README.md", "exec"), namespace)
    assert namespace["cal"].settings["path"] != "plain" and namespace["f_on_grid"].shape == (100,)


def test_site_builds_without_warnings(tmp_path):
    """The Sphinx site (MyST pages, numpydoc API reference) builds with warnings as errors."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("numpydoc")
    from sphinx.cmd.build import build_main
    assert build_main(["-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")]) == 0
    assert (tmp_path / "html" / "api.html").exists() and (tmp_path / "html" / "method.html").exists()


def test_no_reference_leaves_the_repository():
    """Code and docs cite the method page inside the repository (docs/method.md), not a path outside it."""
    root = DOCS.parent
    files = [*root.glob("README.md"), *DOCS.glob("*.md"), *(root / "python").rglob("*.py"),
             *(root / "cpp").rglob("*.[ch]pp"), *(root / "cuda").rglob("*.c[uh]")]
    offenders = [str(f.relative_to(root)) for f in files if "../shared" in f.read_text()]
    assert offenders == []
