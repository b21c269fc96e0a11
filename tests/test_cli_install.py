"""The install a newcomer gets from `make setup` (issue 15): a script written beside the clone,
whose folder is also named `probekit`, imports the package, not that folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_script_beside_the_clone_imports_the_package(tmp_path):
    (tmp_path / "probekit").symlink_to(ROOT, target_is_directory=True)  # ~/probekit, the clone
    (tmp_path / "script.py").write_text(
        "import probekit\nprint(probekit.__file__)\nprint(callable(probekit.evaluate))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    where, has_evaluate = done.stdout.split()
    assert where != "None", ("`import probekit` found the clone folder (a namespace package), not "
                             "the package: the editable install must be a path entry — rerun "
                             "`make setup` (pip install -e . --config-settings "
                             "editable_mode=compat)")
    assert Path(where).resolve() == ROOT / "probekit" / "__init__.py" and has_evaluate == "True"
