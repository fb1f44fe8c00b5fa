"""Install this checkout as a package, non-editable, into a folder of its own: what a user's
`pip install .` puts in site-packages, here without reinstalling the dependencies (the test
process's environment provides them) and without reaching any package index.

Shared by tests/test_package.py and the browser test of the installed app.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Built from a copy: an in-tree build leaves build/ and *.egg-info in the checkout, and
# setuptools never empties build/lib, so a file deleted from pages/ would still ship.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "out", "build", "dist", "*.egg-info", "__pycache__",
                                    "tests")


def install_package(where: Path) -> Path:
    """Build and install the package under where; return the install's folder (PYTHONPATH)."""
    source, target = where / "source", where / "site"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--no-build-isolation", "--target", str(target), str(source)],
                          cwd=where, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    return target


def installed_env(target: Path) -> dict[str, str]:
    """The environment that imports explorer from target, and never from the checkout."""
    return {**os.environ, "PYTHONPATH": str(target)}
