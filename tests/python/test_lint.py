"""Static checks that keep the house in order, run by the test suite (configuration in pyproject.toml)."""
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_ruff():
    """ruff: pyflakes, pycodestyle, bugbear and numpy rules over the package, tests, benches and docs."""
    if shutil.which("ruff") is None:
        pytest.skip("ruff not installed (pip install '.[test]')")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "python", "tests", "bench", "docs"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy():
    """mypy over the package, the compiled module typed by its stub."""
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_compiled_module_stub_is_complete():
    """python/fastnplm/_core.pyi declares every public name of the built module (regenerate it with
    pybind11-stubgen after changing the bindings)."""
    from fastnplm import _core
    stub = (ROOT / "python" / "fastnplm" / "_core.pyi").read_text()
    missing = [n for n in dir(_core) if not n.startswith("_") and f"def {n}(" not in stub and f"class {n}" not in stub
               and f"{n}: " not in stub]
    assert missing == []
    assert (ROOT / "python" / "fastnplm" / "py.typed").exists()
