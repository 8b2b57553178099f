"""Shared fixtures. Each area keeps its fixtures in its own module, re-exported here."""

from auth_fixtures import *  # noqa: F403
from influx_fixtures import *  # noqa: F403
from replay_fixtures import *  # noqa: F403
