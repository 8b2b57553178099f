"""Shared fixtures, kept in tests/helpers and re-exported here."""

from helpers.influx import *  # noqa: F403
from helpers.replay import *  # noqa: F403
