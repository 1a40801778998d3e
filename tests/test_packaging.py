"""What a user gets from `pip install charlm` (a wheel) or its sdist, and the Python versions charlm claims."""
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".benchdata")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The wheel's and the sdist's file names, built by setuptools from a copy of the tree (with a stray editor backup)."""
    tree = tmp_path_factory.mktemp("tree") / "charlm"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*LEFT_OUT))
    (tree / "src/charlm/static/app.js~").write_text("an editor's backup", encoding="utf-8")
    code = "from setuptools import build_meta as b; s = b.build_sdist('dist'); w = b.build_wheel('dist'); print('built', s, w)"
    run = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    sdist, wheel = run.stdout.splitlines()[-1].split()[1:]  # (setuptools logs to stdout before)
    with zipfile.ZipFile(tree / "dist" / wheel) as z:
        wheel_files = z.namelist()
        metadata = z.read(next(n for n in wheel_files if n.endswith(".dist-info/METADATA"))).decode()
    with tarfile.open(tree / "dist" / sdist) as t:
        sdist_files = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    return wheel_files, sdist_files, metadata


def test_wheel_ships_the_corpus_with_its_notice_and_the_page_but_no_stray_file(built):
    files, _, metadata = built
    for name in ("charlm/corpus/jaychou_lyrics.txt", "charlm/corpus/NOTICE", "charlm/static/index.html",
                 "charlm/static/app.js", "charlm/static/style.css", "charlm/cli.py", "charlm/py.typed"):  # (typed: its hints count)
        assert name in files
    assert not any(n.endswith("~") or "/tests/" in n or n.startswith("tests/") for n in files)
    assert any(n.endswith(".dist-info/licenses/src/charlm/corpus/NOTICE") for n in files)  # whose the lyrics are
    assert "Requires-Dist: torch>=2.2" in metadata  # loose: pip must not be made to fetch another torch
    assert "Requires-Dist: pydantic>=2.4" in metadata  # serve's ConfigDict and computed_field; /openapi.json right


def test_sdist_holds_what_its_tests_need(built):
    _, files, _ = built
    tests = {n for n in files if n.startswith("tests/")}
    assert {"tests/__init__.py", "tests/conftest.py", "tests/test_cli.py"} <= tests
    for name in ("Makefile", "BENCHMARKS.md", "README.md", "docs/lstm.md", "docs/zh.md", "bench/load_test.py",
                 ".ci/run", "LICENSE", "src/charlm/corpus/NOTICE"):
        assert name in files, name
    assert not any("__pycache__" in n or n.endswith("~") for n in files)


def test_nothing_needs_a_newer_python_than_the_one_claimed():
    """pyproject says >=3.10: vermin finds the newest syntax and standard library each file uses (CI has one Python)."""
    claimed = next(line for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("requires-python"))
    assert claimed == 'requires-python = ">=3.10"'
    run = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips", "-q", "--target=3.10-", "--violations",
                          "--eval-annotations", "src/charlm", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_main_names_import_from_charlm_itself_without_loading_torch():
    """`from charlm import Trainer, load_model, ...` works, each name the module's own; `import charlm` alone (what the
    command line starts with) loads no torch."""
    code = ("import sys, charlm; assert 'torch' not in sys.modules, 'torch loaded by import charlm'\n"
            "from charlm.train import Trainer; from charlm.checkpoint import load_model; from charlm.errors import CharlmError\n"
            "assert charlm.Trainer is Trainer and charlm.load_model is load_model and charlm.CharlmError is CharlmError\n"
            "missing = [n for n in charlm.__all__ if not hasattr(charlm, n)]; assert not missing, missing\n"
            "assert set(charlm.__all__) <= set(dir(charlm)) and set(charlm.__all__) == {'__version__', *charlm._EXPORTS}\n"
            # each module as an attribute too, as the README writes charlm.transfer.fine_tune_setup (was an AttributeError)
            "import pathlib; mods = {p.stem for p in pathlib.Path(charlm.__file__).parent.glob('*.py')} - {'__init__', '__main__'}\n"
            "assert mods == charlm._modules(), mods ^ charlm._modules()\n"
            "assert charlm.transfer.fine_tune_setup and charlm.sampling.check_known and charlm.presets.PRESETS\n"
            "try:\n    charlm.nothing_here\nexcept AttributeError as e:\n    print(e)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "module 'charlm' has no attribute 'nothing_here'"
