"""ccxt loaded one exchange at a time (coinpredict/exchange/ccxt_lazy.py), in fresh processes:
what a process imports is the point, so nothing here may run in the test process itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_an_adapter_imports_only_its_own_exchange_and_ccxt_still_answers_everything() -> None:
    doc = _run(
        """
import json, sys
from coinpredict.base.clock import SystemClock
from coinpredict.exchange.adapter import ExchangeAdapter
adapter = ExchangeAdapter("binance", "http://127.0.0.1:9", clock=SystemClock())
import ccxt, ccxt.base.errors as errors
ids = {p.stem for p in __import__("pathlib").Path(ccxt.__path__[0]).glob("*.py")} - {"__init__"}
loaded = sorted(m[5:] for m in sys.modules if m.startswith("ccxt.") and m[5:] in ids)
same = ccxt.BadSymbol is errors.BadSymbol and ccxt.binance is type(adapter._main)
print(json.dumps({"loaded": loaded, "ids": len(ids), "same": same,
                  "exchanges": len(ccxt.exchanges), "kraken": ccxt.kraken.__name__,
                  "version": ccxt.__version__}))
"""
    )
    assert doc["loaded"] == ["binance"] and doc["ids"] > 100
    assert doc["same"] is True
    # any other name runs ccxt's own __init__: the full package, as `import ccxt` gives it
    assert doc["exchanges"] == doc["ids"] and doc["kraken"] == "kraken" and doc["version"]


def test_exchange_ids_are_checked_without_importing_any_exchange() -> None:
    doc = _run(
        """
import json, sys
from coinpredict.exchange import ccxt_lazy
checks = {i: ccxt_lazy.is_exchange_id(i) for i in
          ["binance", "kraken", "base", "Binance", "../binance", "nosuchexchange", ""]}
print(json.dumps({"checks": checks, "modules": sorted(m for m in sys.modules if m.startswith("ccxt."))}))
"""
    )
    assert doc["checks"] == {
        "binance": True,
        "kraken": True,
        "base": False,
        "Binance": False,
        "../binance": False,
        "nosuchexchange": False,
        "": False,
    }
    assert doc["modules"] == []


def test_a_process_that_imported_ccxt_in_full_keeps_it() -> None:
    doc = _run(
        """
import json, ccxt
from coinpredict.exchange import ccxt_lazy
print(json.dumps({"same": ccxt_lazy.install() is ccxt, "lazy": ccxt_lazy.is_lazy(ccxt)}))
"""
    )
    assert doc == {"same": True, "lazy": False}
