"""Pure decisions: detection, identity, tags, routing, schedules.

Imports only the standard library. Every function takes the current time and
state as arguments and returns values; nothing here does I/O.
"""
