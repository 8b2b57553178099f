"""Registers every command module on the app (imported at the end of cli/app.py)."""

from coinpredict.cli import cycle_cmd, data_cmds, model_cmds, publish_cmds  # noqa: F401
