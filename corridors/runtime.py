"""Typed keys under which the running service keeps its shared state (aiohttp ``AppKey``s).

Defined in the shared core so that every stage can read the state the wiring in
``sendcost/`` puts there, without importing the front door.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import ClientSession, web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from corridors.config import Config
from corridors.db import DatabaseTarget
from corridors.jobs import JobsUnderWay

if TYPE_CHECKING:
    from corridors.store import Store

CONFIG = web.AppKey("config", Config)
DATABASE = web.AppKey("database", DatabaseTarget)
# The store's class is imported for the type checker only (this module does not load it).
STORE: web.AppKey[Store] = web.AppKey("store")
HTTP = web.AppKey("http", ClientSession)
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)
#: The scheduler's runs under way (``corridors.jobs``), set beside ``SCHEDULER``.
JOBS_UNDER_WAY = web.AppKey("jobs_under_way", JobsUnderWay)
#: Where the serving side reads, when it is not ``STORE`` (``[database] read_url``: a
#: streaming replica, a read-only role); ``read_store(app)`` picks the one to read.
READ_STORE: web.AppKey[Store] = web.AppKey("read_store")
#: The database whose writers announce new quotes (``corridors.notify``): serving listens
#: there. Unset: no listening, the timer alone refreshes.
NOTIFY_URL = web.AppKey("notify_url", str)
#: False in a ``serve --no-collect`` replica: nothing is collected, imported or migrated.
COLLECTING = web.AppKey("collecting", bool)


def read_store(app: web.Application) -> Store:
    """The store the API and page read: the read database when one is set, else ``STORE``."""
    return app.get(READ_STORE) or app[STORE]
