"""The Store: every read and write tagrelay makes, each method one transaction, behind one facade.

The methods live with their aggregate, one module each (the way lemon24/reader splits its storage):

- ``sources``: a source's state, when the next one is due
- ``polls``: the one read a poll's decision needs and the one write that applies it
- ``posts``: known identities, posts and tags
- ``subscriptions``: subscriptions, and the config file applied to sources, channels, subscriptions
- ``channels``: paused, held until, target override
- ``deliveries``: the queue, claims, outcomes, and the views of it
- ``pipeline``: claimed groups of a channel whose platform deduplicates (claim, settle, hand back)
- ``holds``: held bursts released or dropped
- ``pacing``: the persisted token buckets
- ``spending``: what each spending budget reserved in its current window
- ``coordination``: instances, named leases, source claims, taking over a dead instance's work
- ``audit``: the audit log
- ``explain``: what ``tagrelay explain`` reads about one post (deliveries, rule drops, subscriptions)
- ``lifecycle``: a post's later life: edits, edit and delete outcomes, unpublishing, retraction
- ``push``: a poll brought forward by a push, and the WebSub subscriptions
- ``retention``: the prune pass's batches, its dry-run counts, the database's size and free pages

``base`` holds what they share (the ``Database``, ``_read``/``_write``, the dialect helpers). Rows are
mapped to the domain's values (``bot.domain.models``, ``bot.domain.state``); Core statements only
(the ORM costs 2–13× on hot paths, perf-baselines §3). A database failure comes out of any method
as ``StorageError`` (translated once, in ``bot.storage.database``).
"""

from __future__ import annotations

from bot.storage.audit import AuditMixin
from bot.storage.base import StoreBase
from bot.storage.channels import ChannelsMixin
from bot.storage.coordination import CoordinationMixin
from bot.storage.deliveries import DeliveriesMixin
from bot.storage.explain import ExplainMixin
from bot.storage.holds import HoldsMixin
from bot.storage.lifecycle import LifecycleMixin
from bot.storage.pacing import PacingMixin
from bot.storage.pipeline import PipelineMixin
from bot.storage.polls import PollsMixin
from bot.storage.posts import PostsMixin
from bot.storage.push import PushMixin
from bot.storage.retention import RetentionMixin
from bot.storage.sources import SourcesMixin
from bot.storage.spending import SpendingMixin
from bot.storage.subscriptions import SubscriptionsMixin


class Store(SourcesMixin, PollsMixin, PostsMixin, SubscriptionsMixin, ChannelsMixin, DeliveriesMixin, PipelineMixin,
            HoldsMixin, PacingMixin, SpendingMixin, CoordinationMixin, AuditMixin, ExplainMixin, LifecycleMixin,
            PushMixin, RetentionMixin, StoreBase):
    """All database access. Open with ``Store.open(url)`` (or give it a ``Database``); call ``aclose`` at
    the end."""
