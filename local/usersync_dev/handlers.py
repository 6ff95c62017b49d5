"""Importing a function's handler file as Lambda does at a cold start (module-level code runs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from usersync_dev.template import REPO_ROOT

FUNCTIONS_DIR = REPO_ROOT / "functions"


def import_handler(path: Path, module_name: str) -> ModuleType:
    """Execute `path` afresh as `module_name`, replacing any previous copy in sys.modules (so old
    cold starts, and the clients they hold, can be garbage-collected)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a handler from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_function(name: str) -> ModuleType:
    """functions/<name>/app.py, freshly imported."""
    return import_handler(FUNCTIONS_DIR / name / "app.py", f"usersync_function_{name}")
