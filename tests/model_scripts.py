"""Import a script from models/ (not a package) by file name, for tests that use its functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def load_model_script(name: str) -> ModuleType:
    """models/<name>.py as a module, e.g. load_model_script("build_test_mae_dfer_checkpoint")."""
    spec = importlib.util.spec_from_file_location(name, MODELS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
