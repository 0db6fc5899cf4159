"""Puts a `keel` command on PATH for the Python that runs this script, pointing at this checkout.

`make build` (and so `make demo` / `make test`) runs it, so the `keel ...` lines the README and the
demo print work in a shell without a `pip install`. The launcher goes into that Python's scripts
directory (a venv's bin/, pyenv's version bin/ + a shim, /usr/local/bin ...) and imports the
package from this checkout's python/ folder, so a rebuilt extension is picked up with no reinstall.
`pip install .` still installs the pyproject's console script instead.

Idempotent: the file is rewritten only when its content would change. A `keel` that this script did
not write (a pip-installed console script) is left alone unless --force is given.

    python3 scripts/install_cli.py [--scripts-dir DIR] [--force]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

MARKER = "# keel launcher written by scripts/install_cli.py"
CHECKOUT = Path(__file__).resolve().parent.parent


def launcher_text(python: str, package_dir: Path) -> str:
    return (f"#!{python}\n"
            f"{MARKER}: runs the keel command from the checkout at {package_dir.parent}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(package_dir)!r})\n"
            "from keel.cli import main\n"
            "sys.exit(main())\n")


def install(scripts_dir: Path, force: bool = False) -> tuple[Path, str]:
    """Writes scripts_dir/keel; returns (path, what happened)."""
    target = scripts_dir / "keel"
    text = launcher_text(sys.executable, CHECKOUT / "python")
    if target.exists() or target.is_symlink():
        current = target.read_text(errors="replace") if target.is_file() else ""
        if current == text:
            return target, "up to date"
        if MARKER not in current and not force:
            return target, "left alone (not written by Keel's make; --force replaces it)"
    scripts_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".keel.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, target)  # atomic: a shell running `keel` meanwhile sees the old or the new file
    return target, "installed"


def _refresh_pyenv_shims() -> None:
    """pyenv reaches a version's bin/ only through shims, made by `pyenv rehash`."""
    pyenv = shutil.which("pyenv")
    if pyenv and "/.pyenv/" in sys.executable:
        subprocess.run([pyenv, "rehash"], check=False, capture_output=True, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts-dir", type=Path, default=Path(sysconfig.get_path("scripts")),
                        help="where to put `keel` (default: this Python's scripts directory)")
    parser.add_argument("--force", action="store_true", help="replace a `keel` that Keel did not write")
    args = parser.parse_args()
    try:
        target, what = install(args.scripts_dir, args.force)
    except OSError as err:
        print(f"keel: could not write {args.scripts_dir / 'keel'} ({err.strerror}); run the command as "
              f"'{sys.executable} -m keel' with PYTHONPATH={CHECKOUT / 'python'}", file=sys.stderr)
        return 0  # the build itself succeeded; the message says how to get the command
    if what == "installed":
        _refresh_pyenv_shims()
    found = shutil.which("keel")
    if what != "up to date":
        print(f"keel: command {target}: {what}")
    ours = not what.startswith("left alone")
    if ours and (found is None or (Path(found).resolve() != target.resolve() and "/shims/" not in found)):
        print(f"keel: note: '{target.parent}' is not first on PATH (`keel` is {found or 'not found'}); "
              f"add it with: export PATH=\"{target.parent}:$PATH\"", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
