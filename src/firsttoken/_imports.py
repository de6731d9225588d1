"""Load a user's object named ``module:attribute`` or ``path/to/file.py:attribute`` (a metric, a scripted
model, a signature), with a clear error. A module is looked for in the working directory too (the
``firsttoken`` command's own path does not hold it)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ._errors import ConfigError


def import_object(ref: str, what: str, example: str, must_call: bool = True) -> Any:
    module, sep, attr = ref.rpartition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{what} {ref!r}: expected module:name or file.py:name", hint=f"e.g. {example}")
    try:
        mod = _load_file(module) if module.endswith(".py") else _load_module(module)
        obj = getattr(mod, attr)
    except ConfigError:
        raise
    except AttributeError:
        raise ConfigError(f"{what} {ref!r}: {module} defines no {attr!r}", hint="check the name after the colon") from None
    except ImportError as e:
        raise ConfigError(f"{what} {ref!r} cannot be loaded: {e}",
                          hint="the module must be importable (in the working directory or on PYTHONPATH)") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while it ran
        raise ConfigError(f"{what} {ref!r}: importing {module} failed: {type(e).__name__}: {e}",
                          hint="fix the module (run `python -c 'import ...'` to see the traceback)") from None
    if must_call and not callable(obj):
        raise ConfigError(f"{what} {ref!r} is not callable", hint=f"e.g. {example}")
    return obj


def absolute_ref(ref: str) -> str:
    """The reference as a run stores it: a file made absolute, so that it is found from anywhere."""
    module, _, attr = ref.rpartition(":")
    return f"{Path(module).resolve()}:{attr}" if module.endswith(".py") else ref


def stored_ref(ref: str) -> str:
    """A reference a run stored, found again where the checkout has moved: an absolute file path that no
    longer exists is looked for by its trailing parts under the working directory (longest first), e.g.
    ``/old/place/scripts/x.py:C`` as ``scripts/x.py:C``. Only for reloading a stored run, whose digest or
    fingerprint check then refuses a different file; unchanged where nothing matches."""
    module, _, attr = ref.rpartition(":")
    path = Path(module)
    if not module.endswith(".py") or not path.is_absolute() or path.is_file():
        return ref
    parts = path.parts[1:]
    for i in range(len(parts)):
        candidate = Path.cwd().joinpath(*parts[i:])
        if candidate.is_file():
            return f"{candidate}:{attr}"
    return ref


def _load_module(name: str) -> Any:
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        if added:
            sys.path.remove(cwd)


def _load_file(path: str) -> Any:
    file = Path(path).resolve()
    if not file.is_file():
        raise ConfigError(f"{path}: file not found", hint="give the path of a .py file, then :Name")
    name = f"firsttoken_user_{abs(hash(str(file)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic and dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
