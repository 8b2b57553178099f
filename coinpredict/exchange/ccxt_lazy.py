"""ccxt, one exchange at a time.

``import ccxt`` runs ccxt's package ``__init__``, which imports all of its 104 exchange modules:
0.74 CPU-s and 78 MB of RSS (ccxt 4.5.90, measured with ``/usr/bin/time python -c "import
ccxt"``), of which a process that talks to one exchange needs 0.3 CPU-s and 41 MB. Every
``ingest``, ``backfill`` and ``cycle`` run pays the import once; on the small VM the 1m cycle
runs every minute.

:func:`install` registers the ``ccxt`` package in ``sys.modules`` without running that
``__init__``. Its attributes then resolve on first use (a module ``__getattr__``): an exchange id
imports ``ccxt.<id>`` and gives its class, an error class comes from ``ccxt.base.errors``; any
other name (``ccxt.exchanges``, ``ccxt.__version__``, ...) runs the real ``__init__`` once, so
the package still answers everything it would. ccxt's ``__init__`` only imports and lists: it
has no other side effect to miss. The exchange adapter's modules call :func:`install` before
they import ccxt; a process that imported ccxt in full before keeps it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_lock = threading.RLock()
_LAZY = "__coinpredict_lazy__"


def install() -> ModuleType:
    """The ``ccxt`` module of this process: the one already imported, or a lazy one."""
    with _lock:
        mod = sys.modules.get("ccxt")
        if mod is not None:
            return mod
        spec = importlib.util.find_spec("ccxt")
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            raise ImportError("ccxt is not installed")
        mod = importlib.util.module_from_spec(spec)
        setattr(mod, _LAZY, True)
        mod.__getattr__ = _resolver(mod, spec)  # type: ignore[method-assign]
        sys.modules["ccxt"] = mod
        return mod


def is_lazy(mod: ModuleType) -> bool:
    """Whether ``mod`` is the lazy package and its real ``__init__`` has not run."""
    return bool(getattr(mod, "__dict__", {}).get(_LAZY))


def is_exchange_id(exchange_id: str) -> bool:
    """Whether ccxt has an exchange of that id (a top-level module ``ccxt/<id>.py``; in ccxt
    those are exactly the ids of ``ccxt.exchanges``), without importing any exchange."""
    if not (exchange_id.isascii() and exchange_id.isalnum() and exchange_id.islower()):
        return False
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(p) / f"{exchange_id}.py").is_file() for p in spec.submodule_search_locations)


def _resolver(mod: ModuleType, spec: Any) -> Any:
    def __getattr__(name: str) -> Any:
        with _lock:
            if name in mod.__dict__:  # another thread resolved it meanwhile
                return mod.__dict__[name]
            if is_lazy(mod) and not name.startswith("_"):
                errors = importlib.import_module("ccxt.base.errors")
                if hasattr(errors, name):
                    value = getattr(errors, name)
                elif name == "Exchange":
                    value = importlib.import_module("ccxt.base.exchange").Exchange
                elif is_exchange_id(name):
                    # importing the submodule binds the *module* to the package attribute;
                    # ccxt's own __init__ binds the class, as here
                    value = getattr(importlib.import_module(f"ccxt.{name}"), name)
                else:
                    value = _full(mod, spec, name)
                setattr(mod, name, value)
                return value
            if is_lazy(mod):
                return _full(mod, spec, name)
            raise AttributeError(f"module 'ccxt' has no attribute {name!r}")

    return __getattr__


def _full(mod: ModuleType, spec: Any, name: str) -> Any:
    """Run ccxt's real ``__init__`` in the lazy module (once), then look ``name`` up."""
    mod.__dict__.pop(_LAZY, None)
    spec.loader.exec_module(mod)
    if name in mod.__dict__:
        return mod.__dict__[name]
    raise AttributeError(f"module 'ccxt' has no attribute {name!r}")
