"""The one exception tree of tagrelay.

Every error names what it concerns (a config key, a source, a channel) and has
a default message. Third-party exceptions are wrapped at the adapter edge with
``raise ... from exc``; the CLI maps the tree to exit codes (config errors: 2).

::

    TagrelayError
    ├── ConfigError(key, reason)            exit code 2, nothing written
    ├── PluginError(entry_point, reason)    a publisher plugin failed to load
    ├── StorageError                        database unreachable / schema too new
    │   └── InstanceLockedError(holder)     another instance holds the instance lock
    ├── NotFoundError(kind, name)           unknown tag, channel, source, delivery
    ├── MediaError(reason)                  a post's image cannot be fetched or fitted: sent without it
    ├── RuleError(part, reason)             a subscription rule that cannot work (also a ValueError)
    ├── SourceError(source)
    │   ├── FetchError                      network, HTTP status, size cap, redirects
    │   └── FeedParseError                  body is not a feed we can read
    └── PublishError(channel)
        ├── RetryablePublishError           5xx, timeouts, connection errors
        │   ├── RetryAfter(delay)           the platform told us how long to wait
        │   └── AmbiguousPublishError       the request left, no answer came back
        ├── PermanentPublishError           the channel cannot post (403, 402, ...)
        │   ├── CredentialsError            missing or rejected credentials
        │   └── CreditsExhaustedError       no paid credits left (X's 402)
        ├── ContentRejectedError            this message was refused (400, 422)
        ├── DuplicateContentError           the platform already has this post
        ├── ChatMigratedError(new_chat_id)  Telegram moved the chat
        ├── MessageGoneError                the message to edit or delete is not there (any more)
        └── ChangeRefusedError              the platform will not edit or delete this message
"""

from __future__ import annotations


class TagrelayError(Exception):
    """Root of every error tagrelay raises on purpose."""

    default_message = "tagrelay error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(TagrelayError):
    """A configuration value is missing or wrong. ``key`` is a dotted path."""

    default_message = "invalid configuration"

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


class RuleError(TagrelayError, ValueError):
    """A subscription rule's part is wrong (a pattern RE2 cannot compile, a keyword without letters…).

    ``part`` names it where it came from (``patterns``, ``--pattern``); also a ``ValueError``, so a
    configuration model's validator that meets it reports it on the key (exit 2).
    """

    default_message = "invalid subscription rule"

    def __init__(self, part: str, reason: str) -> None:
        self.part = part
        self.reason = reason
        super().__init__(f"{part}: {reason}" if part else reason)


class PluginError(TagrelayError):
    """A publisher plugin could not be loaded or is incompatible."""

    default_message = "publisher plugin error"

    def __init__(self, entry_point: str, reason: str) -> None:
        self.entry_point = entry_point
        self.reason = reason
        super().__init__(f"publisher plugin {entry_point!r}: {reason}")


class StorageError(TagrelayError):
    """The database failed or holds state this version cannot use."""

    default_message = "storage error"


class InstanceLockedError(StorageError):
    """Another tagrelay instance works on this database right now (it holds the instance lock ``where``)."""

    default_action = ("stop it first: only one instance may work on a SQLite database (several need PostgreSQL); "
                      "a crashed or killed instance holds nothing, so a start after it succeeds at once")

    def __init__(self, holder: str, *, where: str, action: str | None = None) -> None:
        self.holder = holder
        self.where = where
        super().__init__(f"another tagrelay instance ({holder}) is running on this database (it holds {where}); "
                         f"{action or self.default_action}")


class UsageError(TagrelayError):
    """A command was called with arguments that cannot work; the message says how to call it."""


class NotFoundError(TagrelayError):
    """An unknown tag, channel, source or delivery was named."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.hint = hint
        text = f"unknown {kind} {name!r}"
        super().__init__(f"{text}; {hint}" if hint else text)


class MediaError(TagrelayError):
    """A post's image could not be fetched, identified or fitted to a platform (bot/media.py).

    Not a ``PublishError``: a publisher that catches it sends the post without the image and logs
    ``reason`` (which names the image's host and path at most, never its query)."""

    default_message = "image unusable"

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason or self.default_message
        super().__init__(self.reason)


class SourceError(TagrelayError):
    """Something went wrong reading a source. Never fatal for the service."""

    default_message = "source error"

    def __init__(self, source: str, message: str | None = None) -> None:
        self.source = source
        super().__init__(f"source {source!r}: {message or self.default_message}")
        self.reason = message or self.default_message


class FetchError(SourceError):
    """The source could not be fetched (network, HTTP status, limits)."""

    default_message = "fetch failed"

    def __init__(self, source: str, message: str | None = None, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(source, message)
        self.status = status
        self.retry_after = retry_after


class FeedParseError(SourceError):
    """The body was fetched but is not a feed or API answer we can read."""

    default_message = "not a readable feed"


class PublishError(TagrelayError):
    """Publishing to a channel failed. Adapters raise only subclasses of this."""

    default_message = "publish failed"
    nothing_sent = False
    """True when the request never left this process (connection refused, an unusable URL): nothing was
    posted and nothing can be billed (``bot.publishers.http.transport_error`` sets it)."""

    def __init__(self, channel: str, message: str | None = None) -> None:
        self.channel = channel
        self.reason = message or self.default_message
        super().__init__(f"channel {channel!r}: {self.reason}")


class RetryablePublishError(PublishError):
    """A transient failure: try again later with backoff."""

    default_message = "temporary failure"


class RetryAfter(RetryablePublishError):
    """The platform asked us to wait ``delay`` seconds before calling again."""

    default_message = "rate limited"

    def __init__(self, channel: str, delay: float, message: str | None = None) -> None:
        self.delay = max(0.0, float(delay))
        super().__init__(channel, message or f"rate limited; retry after {self.delay:.0f}s")


class AmbiguousPublishError(RetryablePublishError):
    """The request left but no answer came: the post may or may not exist."""

    default_message = "no answer from the platform; the post may or may not have been published"


class PermanentPublishError(PublishError):
    """The channel cannot post until an operator acts (blocked, no rights, no credits)."""

    default_message = "the channel cannot post"


class CredentialsError(PermanentPublishError):
    """Credentials are missing or were rejected. Never includes the secret."""

    default_message = "credentials missing or rejected"


class CreditsExhaustedError(PermanentPublishError):
    """The platform refused the request for want of paid credits (X's 402 Payment Required)."""

    default_message = "out of credits"


class ContentRejectedError(PublishError):
    """The platform refused this particular message (bad markup, too long)."""

    default_message = "message rejected by the platform"


class DuplicateContentError(PublishError):
    """The platform says this post already exists: treat as sent."""

    default_message = "duplicate content: already posted"


class ChatMigratedError(PublishError):
    """Telegram moved the group to a supergroup with a new id."""

    def __init__(self, channel: str, new_chat_id: int) -> None:
        self.new_chat_id = new_chat_id
        super().__init__(channel, f"chat migrated to {new_chat_id}")


class MessageGoneError(PublishError):
    """The message an edit or a deletion names is not on the platform (any more): deleted by hand, or
    by an earlier attempt whose answer was lost. A deletion is then done; an edit has nothing to edit."""

    default_message = "the message is not there (any more)"


class ChangeRefusedError(PublishError):
    """The platform will not edit or delete this message (Telegram: "message can't be deleted" after
    48 hours), though the channel itself works: final for this edit or deletion, the channel goes on."""

    default_message = "the platform refused to change this message"
