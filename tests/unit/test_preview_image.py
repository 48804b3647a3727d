"""``tagrelay preview`` and the admin bot's /preview say how a channel sends the post's image and its alt text."""

from __future__ import annotations

from bot.admin.replies import format_preview_head
from bot.services.reports import PreviewItem


def item(platform: str, image: str | None, alt: str | None = None, *, text: str = "t",
         link: str | None = None) -> PreviewItem:
    return PreviewItem(channel="c", platform=platform, text=text, format="plain", length=1, limit=500,
                       post_title="Post", post_url="https://a.example/p/", image_url=image, image_alt=alt, link=link)


def test_the_image_note_per_platform() -> None:
    assert item("mastodon", None).image_note is None
    assert item("telegram", "https://i/a.jpg").image_note == "sent as a photo with caption (Telegram has no alt text)"
    assert item("mastodon", "https://i/a.jpg", "A kite").image_note == "with the featured image, alt text: A kite"
    assert item("x", "https://i/a.jpg").image_note == "with the featured image, no alt text"


def test_the_admin_head_shows_hostile_alt_text_escaped_and_cut() -> None:
    head = format_preview_head(item("mastodon", "https://i/a.jpg", "<b>bold</b>\u202eevil" + "x" * 1000))
    assert "&lt;b&gt;bold&lt;/b&gt;" in head and "\\u202e" in head and "x" * 400 not in head


def test_a_bluesky_link_card_is_named_where_the_text_leaves_the_link_out() -> None:
    """With a card (the default) the post link is not in a Bluesky post's text: the preview says where it is."""
    link = "https://a.example/p/"
    card = item("bluesky", None, text="Title\n\n#Tag", link=link)
    assert card.link_note == "on the link card, not in the text"
    assert item("bluesky", None, text=f"Title {link}", link=link).link_note is None  # in the text: nothing to add
    assert item("mastodon", None, text="Title", link=link).link_note is None
    assert "link on the link card, not in the text" in format_preview_head(card)
