"""Health: the one freshness evaluator shared by ``status``, ``monitor`` and ``export``.

- :mod:`coinpredict.health.freshness`: pure classification (injected ``now_ms``, no I/O).
- :mod:`coinpredict.health.collect`: the thin I/O layer (InfluxDB, state files, exported files).
- :mod:`coinpredict.health.status`: ``status`` (evaluation + job statistics, JSON and exit code).
- :mod:`coinpredict.health.monitor`: transitions, alerts, webhook delivery.

Nothing here imports numpy, polars, ccxt, scikit-learn or joblib: ``status`` must stay fast.
"""
