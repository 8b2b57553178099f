"""Helpers shared by the tests: fixtures (influx, replay), committed samples, the export world."""
