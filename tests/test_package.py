"""The library's promise to notebook users: importing it never pulls in Streamlit."""
import pkgutil
import re
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


def test_pages_name_shared_session_state_keys_only_through_pages_keys():
    # A key spelt out in two modules is a silent bug when one of them changes: pages/keys.py
    # names them once (a widget's own key=, used where it is drawn, is fine).
    spelt = []
    for path in sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"session_state(\[|\.get\(|\.setdefault\(|\.pop\()\s*[\"']", line):
                spelt.append(f"{path.name}:{number}: {line.strip()}")
    assert not spelt, "\n".join(spelt)

