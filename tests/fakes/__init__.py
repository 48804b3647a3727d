"""Loopback servers that speak the platforms' documented wire formats, for real-HTTP tests."""
