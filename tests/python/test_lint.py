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


def test_clang_format():
    """The C++ and CUDA sources follow .clang-format (a pinned clang-format: versions format differently)."""
    exe = shutil.which("clang-format")
    if exe is None:
        pytest.skip("clang-format not installed (pip install '.[test]')")
    files = subprocess.run(["git", "ls-files", "*.cpp", "*.hpp", "*.cu", "*.cuh"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    proc = subprocess.run([exe, "--dry-run", "--Werror", *files], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
