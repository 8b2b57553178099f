"""InfluxDB adapter over the v1-compatible HTTP API (works with 1.x, 2.7+ and 3.x)."""
