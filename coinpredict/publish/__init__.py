"""Publishing: the JSON nginx serves (the published JSON files) and ``coinpredict check``.

- :mod:`coinpredict.publish.artifacts`: file names, document builders and validators (light:
  shared with ``status``, which checks the exported files).
- :mod:`coinpredict.publish.export`: ``coinpredict export`` (atomic writes, manifest, status.json).
- :mod:`coinpredict.publish.check`: ``coinpredict check`` (InfluxDB <-> JSON, future-values smoke).
"""
