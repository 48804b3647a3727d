"""Inbound adapters: read an archive (RSS/Atom, JSON Feed, WordPress REST) into ParsedPost values."""
