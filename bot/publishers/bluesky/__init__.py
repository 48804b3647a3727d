"""The Bluesky publisher (``platform = "bluesky"``), split by concern:

* ``publisher``: the plugin, the options, ``publish`` / ``check`` and the error classification;
* ``session``: login, refresh, and the persisted login limit;
* ``xrpc``: the HTTP calls and error bodies;
* ``records``: the record, its key (a TID derived from the delivery) and the read-back match (pure).
"""

from bot.publishers.bluesky.publisher import BlueskyOptions, BlueskyPlugin, BlueskyPublisher, plugin

__all__ = ["BlueskyOptions", "BlueskyPlugin", "BlueskyPublisher", "plugin"]
