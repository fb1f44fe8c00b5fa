import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The app saves runs as they train: in tests, into a store of this test session's own, never
# the user's data folder (tests that need a store of their own pass its path).
os.environ["GATE_EXPLORER_DB"] = str(Path(tempfile.mkdtemp(prefix="gate-explorer-tests-")) / "runs.sqlite")
