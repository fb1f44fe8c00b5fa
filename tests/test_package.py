"""The library's promise to notebook users: importing it never pulls in Streamlit."""
import pkgutil
import subprocess
import sys
from pathlib import Path

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
