"""Use cases: polling, delivery, administration. The CLI and the bot handlers call these."""
