"""Data-quality monitoring as a service: many channels tested batch after batch, a history in
SQLite, and a dashboard in the browser (docs/dqm.md).

- :class:`MonitorService` (``fastnplm monitor CONFIG.toml``): the channels of a configuration,
  each a calibrated :class:`fastnplm.Monitor`, tested on every batch that lands in a directory
  or comes from a Python iterator;
- :class:`History`: the SQLite record, one transaction per batch;
- :func:`write_dashboard`, :func:`serve`: the static dashboard and its read-only server
  (:mod:`fastnplm.ui.dqm.server`);
- :func:`load_config`, :class:`ConfigError`, :class:`Selection`: the configuration.
"""
from .config import ConfigError, Selection, load_config
from .dashboard import serve, snapshot, write_dashboard
from .history import History
from .service import Channel, MonitorService

__all__ = ["Channel", "ConfigError", "History", "MonitorService", "Selection", "load_config", "serve", "snapshot",
           "write_dashboard"]
