"""Shared fixtures, kept in tests/helpers and re-exported here."""

from helpers.auth import *  # noqa: F403
from helpers.influx import *  # noqa: F403
from helpers.replay import *  # noqa: F403
