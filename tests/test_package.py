"""The library's promise to notebook users: importing it never pulls in Streamlit. And the
package as pip installs it: the library, the `gate-explorer` command and the app's files, all
working from outside the checkout."""
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _install import installed_env

import explorer

ROOT = Path(__file__).resolve().parents[1]


def test_no_explorer_module_imports_streamlit():
    modules = [f"explorer.{m.name}" for m in pkgutil.iter_modules(explorer.__path__)]
    assert {"explorer.trace", "explorer.trainer", "explorer.run"} <= set(modules)
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; " \
           "print('streamlit' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_pages_name_shared_session_state_keys_only_through_pages_keys():
    # A key spelt out in two modules is a silent bug when one of them changes: pages/keys.py
    # names them once (a widget's own key=, used where it is drawn, is fine).
    spelt = []
    for path in sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"session_state(\[|\.get\(|\.setdefault\(|\.pop\()\s*[\"']", line):
                spelt.append(f"{path.name}:{number}: {line.strip()}")
    assert not spelt, "\n".join(spelt)


# The package as pip installs it, used from outside the checkout.

@pytest.fixture(scope="module")
def installed(installed_package) -> Path:
    return installed_package


def installed_run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run args in cwd, a folder outside the checkout, so nothing can be imported from there."""
    return subprocess.run(list(args), cwd=cwd, env=installed_env(installed), capture_output=True,
                          text=True, timeout=120)


def test_the_install_ships_the_app_its_pages_and_its_assets(installed):
    app = installed / "explorer" / "_app"
    assert (app / "app.py").read_text() == (ROOT / "app.py").read_text()
    for folder in ("pages", "assets"):
        shipped = {p.relative_to(ROOT / folder) for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert shipped and all((app / folder / name).is_file() for name in shipped), folder
    assert (app / "static").is_dir()    # where the app puts Plotly's JavaScript at start-up
    kernel = Path("explorer") / "cells" / "kernels.c"             # compiled at first use (cells/native.py)
    assert (installed / kernel).read_text() == (ROOT / kernel).read_text()


def test_explorer_imports_from_the_install_and_loads_its_assets(installed, tmp_path):
    code = ("import explorer, explorer.data as d; from explorer.tasks import make_task; "
            "task = make_task('digits', 8); print(explorer.__file__, d.ASSETS, task.name, len(d.load_series('co2')))")
    done = installed_run(installed, tmp_path, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    module, assets, task, co2 = done.stdout.split()
    assert Path(module) == installed / "explorer" / "__init__.py"
    assert Path(assets) == installed / "explorer" / "_app" / "assets"
    assert (task, co2) == ("digits", "2284")


@pytest.mark.slow
def test_gate_explorer_help_lists_every_command(installed, tmp_path):
    done = installed_run(installed, tmp_path, str(installed / "bin" / "gate-explorer"), "--help")
    assert done.returncode == 0, done.stderr
    assert "{train,bench,sweep,lesson,app,runs,trace}" in done.stdout
    assert done.stdout.startswith("usage: gate-explorer ")   # the name the user typed, not the module's
    listed = installed_run(installed, tmp_path, str(installed / "bin" / "gate-explorer"), "lesson", "--list")
    assert listed.returncode == 0 and listed.stdout.split()[0] == "vanishing", listed.stderr


@pytest.mark.slow
def test_gate_explorer_trains_and_its_exit_status_is_the_cli_s(installed, tmp_path):
    script = str(installed / "bin" / "gate-explorer")
    done = installed_run(installed, tmp_path, script, "train", "--task", "adding", "--seq-len", "10",
                         "--hidden", "8", "--steps", "5", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] == 5
    bad = installed_run(installed, tmp_path, script, "train", "--hidden", "0")
    assert bad.returncode == 2 and "hidden must be between" in bad.stderr

