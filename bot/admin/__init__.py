"""The Telegram admin bot (the ``admin-bot`` sidecar), as a package.

* ``settings`` — the ``[admin]`` table and ``TAGRELAY_ADMIN_IDS`` (no Telegram library needed);
* ``views`` — the state words and problems of sources and channels, computed once for the CLI and the bot;
* ``replies`` — the bot's command table and its HTML replies, bounded to what Telegram accepts (pure);
* ``keyboards`` — the inline keyboards and what each button means (``arbitrary_callback_data``);
* ``commands`` — each command: parse, one ``AdminService`` call, one reply;
* ``webhook`` — the listener Telegram posts updates to in webhook mode (``aiohttp.web``);
* ``bot`` — python-telegram-bot's ``Application``: lifecycle, filters, handlers, announcements.

Only ``keyboards``, ``commands`` and ``bot`` import python-telegram-bot, and only ``bot.sidecars``
imports them (through ``bot``) — lazily, when ``[admin]`` is enabled: PTB costs ~0.3 s and ~10 MiB
to import, which a service without an admin bot should not pay. This ``__init__`` imports nothing,
so ``bot.admin.views`` stays light for the CLI.
"""
