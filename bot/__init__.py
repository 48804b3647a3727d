"""tagrelay: publishes new archive posts, per tag, to Telegram, X and Mastodon."""

__version__ = "0.1.0"

__all__ = ["__version__"]
