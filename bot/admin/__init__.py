"""The Telegram admin bot's parts; ``settings`` (the ``[admin]`` table) is light: no python-telegram-bot."""
