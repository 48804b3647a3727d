"""An X channel's spending keys (pay-per-use): its budgets, its account's, the price of each kind of request,
and what one message costs.

::

    [[channels]]
    platform = "x"
    budget = "5 USD/day"              # this channel; or "100 USD/month", or both: ["5 USD/day", "100 USD/month"]
    account_budget = "20 USD/day"     # every channel posting with the same X account (same credential variables)
    price_post_with_url = "0.20"      # USD per request; the defaults are X's price list (docs/configuration.md)
    price_post = "0.015"
    price_media_upload = "0"
    price_media_metadata = "0.005"
    price_delete = "0.010"             # a deletion (on_delete = "delete", tagrelay retract)

Amounts are micro-dollars once validated (``bot.domain.budget``). A budget smaller than one post (with a
URL) could never let a post through: refused at load, on the key. The delivery service reserves
``cost_of(message)`` against the channel's budgets before each post, and ``delete_cost()`` before each
deletion (``bot.services.spending``).
"""

from __future__ import annotations

from pydantic import ValidationInfo

from bot.config_bounds import Budgets, Price
from bot.domain.budget import ChannelSpending, Limit, Prices, usd
from bot.render.message import RenderedMessage
from bot.render.options import XRenderOptions
from bot.render.twittertext import url_entities
from bot.validation import field_validator

PRICE_LIST_DATE = "2026-04-21"
"""When X's price list (docs.x.com, "Pricing") gained the prices the defaults below are (read 2026-08)."""
DEFAULT_PRICE_POST_WITH_URL = 200_000
"""$0.200: "Post create with URL"."""
DEFAULT_PRICE_POST = 15_000
"""$0.015: "Post create"."""
DEFAULT_PRICE_MEDIA_UPLOAD = 0
"""Media upload is not on X's price list (read 2026-08): 0 until it is; set it if your console bills it."""
DEFAULT_PRICE_MEDIA_METADATA = 5_000
"""$0.005: "Media Metadata" (an image's alt text)."""
DEFAULT_PRICE_DELETE = 10_000
"""$0.010: "Interaction: Delete" (``DELETE /2/tweets/:id``: an unpublished or retracted post's deletion)."""


class XBudgetOptions(XRenderOptions):
    """The spending keys of an X channel (module docstring). Prices come first: the budgets are checked
    against them."""

    price_post_with_url: Price = DEFAULT_PRICE_POST_WITH_URL
    price_post: Price = DEFAULT_PRICE_POST
    price_media_upload: Price = DEFAULT_PRICE_MEDIA_UPLOAD
    price_media_metadata: Price = DEFAULT_PRICE_MEDIA_METADATA
    price_delete: Price = DEFAULT_PRICE_DELETE
    """What deleting a post costs (``on_delete = "delete"``, ``tagrelay retract``)."""
    budget: Budgets = ()
    """This channel's spending per UTC day and/or calendar month; none: unlimited."""
    account_budget: Budgets = ()
    """The spending of every channel posting with this channel's X account together."""

    @field_validator("budget", "account_budget")
    @classmethod
    def _one_post_fits(cls, value: tuple[Limit, ...], info: ValidationInfo) -> tuple[Limit, ...]:
        prices = [info.data[k] for k in ("price_post_with_url", "price_post") if k in info.data]
        post = max(prices, default=DEFAULT_PRICE_POST_WITH_URL)
        for lim in value:
            if lim.amount < post:
                raise ValueError(f"{lim} is less than one post ({usd(post)} USD): no post could ever go out")
        return value

    def budget_account(self) -> str:
        """Which account the channel posts as, for ``account_budget`` (``XOptions`` names its credentials)."""
        return f"x:{self.name}"

    def prices(self) -> Prices:
        return Prices(post_with_url=self.price_post_with_url, post=self.price_post,
                      media_upload=self.price_media_upload, media_metadata=self.price_media_metadata)

    def spending_terms(self) -> ChannelSpending | None:
        """``bot.publishers.api.Budgeted``: the budgets, empty when unset (the channel still counts in an
        account budget another channel of its account sets)."""
        return ChannelSpending(self.name, self.budget, self.budget_account(), self.account_budget, self.prices())

    def delete_cost(self) -> int:
        """``bot.publishers.api.BudgetedDeletes``: what one deletion costs, in micro-dollars."""
        return int(self.price_delete)

    def cost_of(self, message: RenderedMessage) -> int:
        """What sending ``message`` costs in micro-dollars: the post (with a URL when it carries the post's
        link, or X would find one in its text: never less than X may bill), plus the image's upload and alt
        text when it carries an image."""
        has_url = bool(message.link and message.link in message.text) or bool(url_entities(message.text))
        return self.prices().post_cost(has_url=has_url, image=message.image_url is not None,
                                       alt_text=bool(message.image_alt))
