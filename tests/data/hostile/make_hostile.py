"""Generate the hostile-source corpus in this folder: deterministic, rerunnable.

Run ``.venv/bin/python tests/data/hostile/make_hostile.py`` from the repository root;
it rewrites every ``*.xml`` / ``*.html`` file it owns and nothing else. The test
``tests/integration/test_hostile_corpus.py`` serves these files from a loopback
server (``SITE`` below is replaced by the server's address at serve time) and
builds the cases that are too large or too many to keep as files (truncation at
every point, huge and deep documents, bursts, churning guids) from the same
functions, so one place describes the corpus:

* ``before.xml``                 a clean WordPress RSS feed: posts 1–3 (the baseline)
* ``after.xml``                  the same feed one post later: post 4, tagged ``MEK`` and ``إيران``
* ``bad-byte-old-item.xml``      ``after.xml`` with one invalid UTF-8 byte in post 1's excerpt
* ``cp1256-declared-utf8.xml``   ``after.xml`` whose post 4 is written in windows-1256 bytes, declared UTF-8
* ``control-chars.xml``          ``after.xml`` whose post 4 title carries ESC[2J, an OSC title, BEL and U+202E
* ``xxe.xml``                    an external entity pointing at a local file (``@CANARY@`` is its path)
* ``billion-laughs.xml``         nested internal entities that expand to gigabytes
* ``discovery-file-link.html``   a home page announcing its feed as a ``file:`` URL (``@CANARY@``)
* ``discovery-ok.html``          the same home page announcing ``/feed/``
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE = "http://archive.invalid"
CANARY = "@CANARY@"
START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Item:
    number: int
    title: str
    tags: tuple[str, ...]
    excerpt: str = "What happened, in brief. [&#8230;]"
    guid: str | None = None
    link: str | None = None

    def guid_text(self) -> str:
        return self.guid if self.guid is not None else f"{SITE}/?p={1000 + self.number}"

    def link_text(self) -> str:
        return self.link if self.link is not None else f"{SITE}/2024/03/0{self.number % 9 + 1}/post-{self.number}/"


BASE_ITEMS = (
    Item(1, "Crowds gather in Baghdad for the third week", ("Iraq", "Iraq protest against Iran’s meddling")),
    Item(2, "Karbala students march again", ("Iraq", "MEK")),
    Item(3, "تظاهرات در بغداد ادامه دارد", ("ایران", "Iraq")),
)
NEW_ITEM = Item(4, "Post 4: Basra joins the protests", ("MEK", "إيران"))


def item_xml(item: Item) -> str:
    when = START + timedelta(hours=item.number)
    cats = "".join(f"\t\t<category><![CDATA[{tag}]]></category>\n" for tag in item.tags)
    return (
        "\t<item>\n"
        f"\t\t<title>{escape(item.title, quote=False)}</title>\n"
        f"\t\t<link>{escape(item.link_text())}</link>\n"
        "\t\t<dc:creator><![CDATA[Staff Writer]]></dc:creator>\n"
        f"\t\t<pubDate>{format_datetime(when, usegmt=True)}</pubDate>\n"
        f"{cats}"
        f"\t\t<guid isPermaLink=\"false\">{escape(item.guid_text())}</guid>\n"
        f"\t\t<description><![CDATA[{item.excerpt}]]></description>\n"
        f"\t\t<content:encoded><![CDATA[<p>{escape(item.title)}.</p> <p>Continue Reading</p>]]></content:encoded>\n"
        "\t</item>\n"
    )


def feed_xml(items: tuple[Item, ...] | list[Item], *, prolog: str = "") -> str:
    """A WordPress-shaped RSS 2.0 document, newest item first."""
    body = "".join(item_xml(i) for i in sorted(items, key=lambda i: -i.number))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + prolog +
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n'
        "\t<title>Iraq protest against Iran’s meddling – Archive</title>\n"
        f"\t<link>{SITE}</link>\n\t<description>News from the Iraqi street</description>\n"
        f"{body}</channel>\n</rss>\n"
    )


def before() -> bytes:
    return feed_xml(BASE_ITEMS).encode()


def after() -> bytes:
    return feed_xml((*BASE_ITEMS, NEW_ITEM)).encode()


def bad_byte_old_item() -> bytes:
    old = Item(1, BASE_ITEMS[0].title, BASE_ITEMS[0].tags, excerpt="Caf@BAD@ owner speaks. [&#8230;]")
    return feed_xml((old, *BASE_ITEMS[1:], NEW_ITEM)).encode().replace(b"@BAD@", b"\xe9")


def cp1256_declared_utf8() -> bytes:
    doc = feed_xml((*BASE_ITEMS, NEW_ITEM))
    head, sep, rest = doc.partition("\t<item>")  # post 4 is first: newest first
    first, sep2, tail = rest.partition("\t</item>\n")
    return head.encode() + (sep + first + sep2).encode("cp1256", errors="strict") + tail.encode()


CONTROL_TITLE = "Post 4: Basra \x1b[2J\x1b]0;pwned\x07 joins \u202egnp.exe the protests\x9b31m"


def control_chars() -> bytes:
    item = Item(4, CONTROL_TITLE, NEW_ITEM.tags)
    # XML 1.0 forbids C0 controls: as a real (broken) WordPress would, put them in raw
    return feed_xml((*BASE_ITEMS, item)).replace(escape(CONTROL_TITLE, quote=False), CONTROL_TITLE).encode()


def xxe() -> bytes:
    prolog = f'<!DOCTYPE rss [<!ENTITY leak SYSTEM "file://{CANARY}">]>\n'
    item = Item(4, "Post 4: Basra joins the protests &leak;", NEW_ITEM.tags)
    return feed_xml((*BASE_ITEMS, item), prolog=prolog).replace("&amp;leak;", "&leak;").encode()


def billion_laughs() -> bytes:
    ents = ['<!ENTITY lol0 "lololololololololololol">']
    ents += [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    prolog = "<!DOCTYPE rss [" + "".join(ents) + "]>\n"
    item = Item(4, "Post 4: Basra joins the protests &lol9;", NEW_ITEM.tags)
    return feed_xml((*BASE_ITEMS, item), prolog=prolog).replace("&amp;lol9;", "&lol9;").encode()


def home(feed_href: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html><head><title>Archive</title>\n"
        f'<link rel="alternate" type="application/rss+xml" title="Archive » Feed" href="{feed_href}" />\n'
        "</head><body><p>Continue Reading</p></body></html>\n"
    ).encode()


FILES = {
    "before.xml": before,
    "after.xml": after,
    "bad-byte-old-item.xml": bad_byte_old_item,
    "cp1256-declared-utf8.xml": cp1256_declared_utf8,
    "control-chars.xml": control_chars,
    "xxe.xml": xxe,
    "billion-laughs.xml": billion_laughs,
    "discovery-file-link.html": lambda: home(f"file://{CANARY}"),
    "discovery-ok.html": lambda: home(f"{SITE}/feed/"),
}


def main() -> None:
    for name, make in FILES.items():
        (HERE / name).write_bytes(make())


if __name__ == "__main__":
    main()
