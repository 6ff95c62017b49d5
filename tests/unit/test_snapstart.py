"""The SnapStart after-restore hook: registered where Lambda's runtime offers it, harmless elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import usersync.runtime.snapstart
from usersync_dev.template import REPO_ROOT

# A stand-in for Lambda's runtime module (outside our system): records hooks; restore() runs them.
RUNTIME_MODULE = """
hooks = []
def register_after_restore(hook):
    hooks.append(hook)
    return hook
def restore():
    for hook in hooks:
        hook()
"""

# A snapshot of random's state taken at init, restored twice as two environments would resume it.
RESTORE_TWICE = """
import json, random, sys
import usersync.runtime.observability
import snapshot_restore_py as runtime
snapshot = random.getstate()
draws = []
for environment in range(2):
    random.setstate(snapshot)
    runtime.restore()
    draws.append(random.random())
random.setstate(snapshot)
print(json.dumps({"hooks": len(runtime.hooks), "draws": draws, "unhooked": random.random()}))
"""


def test_without_lambdas_runtime_module_nothing_is_registered_and_import_is_clean() -> None:
    assert usersync.runtime.snapstart.REGISTERED is False
    assert "snapshot_restore_py" not in sys.modules


def test_restored_environments_draw_different_random_numbers(tmp_path: Path) -> None:
    (tmp_path / "snapshot_restore_py.py").write_text(RUNTIME_MODULE, encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, "-c", RESTORE_TWICE],
        env={"PYTHONPATH": f"{tmp_path}:{REPO_ROOT / 'layers' / 'shared'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["hooks"] == 1  # registered once, by importing what every handler imports
    first, second = result["draws"]
    assert first != second  # each environment reseeded: no shared sequence
    assert result["unhooked"] not in (first, second)  # without the hook both would have drawn this


def test_register_hands_the_hook_to_the_given_registrar() -> None:
    registered: list[object] = []
    assert usersync.runtime.snapstart.register(registered.append) is True
    assert registered == [usersync.runtime.snapstart.renew_after_restore]
