"""Outbound adapters. Each platform is a plugin found through entry points."""
