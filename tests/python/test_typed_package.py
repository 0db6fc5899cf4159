"""The package is typed (PEP 561) and its extension's stubs cannot drift from the bindings unnoticed."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "python" / "keel"


def _stubs_script():
    spec = importlib.util.spec_from_file_location("keel_stubs_script", ROOT / "scripts" / "stubs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["py.typed", "_core/__init__.pyi", "_core/model_keys.pyi"])
def test_type_information_is_in_the_package_and_shipped(name):
    assert (PACKAGE / name).is_file(), f"python/keel/{name} is missing"
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # The wheel takes every file of python/keel that git does not ignore (scikit-build-core's wheel.packages).
    ignored = subprocess.run(["git", "check-ignore", "-q", f"python/keel/{name}"], cwd=ROOT)
    assert ignored.returncode == 1, f"python/keel/{name} is git-ignored, so the wheel would leave it out"


def test_generated_stubs_carry_no_addresses_and_no_checkout_path():
    stubs = _stubs_script()
    text = (f"def f(x: int = <keel._core.Thing object at 0x7f3a2b1c>) -> None: ...   \n"
            f"# from {stubs.ROOT}/python/keel\n\n\n")
    assert stubs._normalize(text) == "def f(x: int = <keel._core.Thing object>) -> None: ...\n# from python/keel\n"


def test_the_stub_check_passes_on_fresh_stubs_and_names_make_stubs_on_drift(tmp_path, monkeypatch, capsys):
    stubs = _stubs_script()
    assert stubs.generate(tmp_path) == [Path("_core/__init__.pyi"), Path("_core/model_keys.pyi")]
    monkeypatch.setattr(stubs, "PACKAGE", tmp_path)
    assert stubs.check() == 0, capsys.readouterr().err
    with open(tmp_path / "_core" / "__init__.pyi", "a", encoding="utf-8") as f:
        f.write("def removed_from_the_bindings() -> None: ...\n")
    assert stubs.check() == 1
    err = capsys.readouterr().err
    assert "+def removed_from_the_bindings" not in err and "-def removed_from_the_bindings" in err
    assert "run `make stubs`" in err
