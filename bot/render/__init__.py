"""Pure rendering: (post, channel options, limits) → message text. No I/O."""
