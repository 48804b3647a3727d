"""Pure rendering: (post, channel options, limits) → message text. No I/O.

Entry points, one per platform: ``render_telegram``, ``render_x``,
``render_mastodon`` (each ``(post, options, env, *, plain=False) ->
RenderedMessage``) and ``render_console``. Shared pieces: ``text`` (HTML to
text, trailers, clean cuts), ``hashtags``, ``templates`` (sandboxed Jinja2),
``fit`` (the shrinking order), ``tghtml`` (Telegram's HTML subset).
"""
