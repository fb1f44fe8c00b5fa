import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The app saves runs as they train: in tests, into a store of this test session's own, never
# the user's data folder (tests that need a store of their own pass its path).
os.environ["GATE_EXPLORER_DB"] = str(Path(tempfile.mkdtemp(prefix="gate-explorer-tests-")) / "runs.sqlite")


@pytest.fixture(scope="session")
def installed_package(tmp_path_factory) -> Path:
    """This checkout installed as a package (tests/_install.py), built once per test run and
    shared by the package tests and the installed app's browser test: a build takes 20-30 s."""
    from _install import install_package
    return install_package(tmp_path_factory.mktemp("package"))


def pytest_collection_modifyitems(config, items):
    """Every test under tests/browser/ is a browser test (the `browser` marker), so the fast
    lane leaves them out without each file saying so."""
    browser = Path(__file__).parent / "browser"
    for item in items:
        if browser in item.path.parents:
            item.add_marker(pytest.mark.browser)
