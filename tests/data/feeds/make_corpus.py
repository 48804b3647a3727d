"""Generate the feed corpus in this folder: seeded, deterministic, rerunnable.

Run ``.venv/bin/python tests/data/feeds/make_corpus.py`` from the repository
root; it rewrites every file it owns and nothing else. The corpus models a
WordPress tag archive (the posts paraphrase ``/work/shared/seed``'s tag page):

* ``wp-rss.xml``                 well-formed WordPress RSS 2.0, 10 items, full content
* ``atom.xml``                   the same posts as Atom 1.0
* ``empty.xml``                  a channel without items
* ``bom.xml``                    UTF-8 BOM before the XML declaration
* ``blank-lines.xml``            blank lines before ``<?xml`` (a common plugin bug)
* ``truncated.xml``              cut before the last ``</item></channel></rss>``
* ``unescaped-amp.xml``          bare ``&`` in a title, a link and the channel title
* ``undefined-entities.xml``     ``&eacute; &nbsp; &hellip;`` (HTML, not XML) in a title
* ``missing-title-close.xml``    one item lacks ``</title>``
* ``missing-category-close.xml`` one item lacks a ``</category>``
* ``latin1-declared-utf8.xml``   declares ISO-8859-1, the bytes are UTF-8
* ``utf8-declared-cp1252.xml``   declares UTF-8, the bytes are windows-1252
* ``feed.json``                  JSON Feed 1.1; ``feed-1.0.json`` the 1.0 shape
* ``wp-rest-posts.json``         a ``/wp/v2/posts`` answer; ``wp-rest-tags.json``, ``wp-rest-categories.json``
* ``expected.json``              the ground truth of the 10 posts, for the tests

``WELL_FORMED`` and ``MALFORMED`` list the XML files by kind for the tests.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE = "https://archive.example.org"
SEED = 20200216

WELL_FORMED = ("wp-rss.xml", "atom.xml", "empty.xml", "bom.xml", "blank-lines.xml")
MALFORMED = (
    "truncated.xml",
    "unescaped-amp.xml",
    "undefined-entities.xml",
    "missing-title-close.xml",
    "missing-category-close.xml",
    "latin1-declared-utf8.xml",
    "utf8-declared-cp1252.xml",
)

# Titles as WordPress stores them (text); the writers escape them per format.
_TITLES = [
    "Students in Iraq Keep Up Protests Against Iranian Influence",
    "Crackdown Fails to Quiet Iraq’s Streets",
    "Iraq After Soleimani: “A Country That Wants Itself Back”",
    "Why the MEK Says Iraq Needs Tehran Out",
    "Karbala Crowd Storms Iran’s Consulate",
    "Tehran’s “Strategic Depth” & the Cost of Meddling",
    "Khamenei Speaks After Two Weeks of Silence",
    "Najaf Renames Its Main Street",
    "Human Rights Office Counts the Toll of the Protests",
    "Café Talk in Baghdad: Students & Workers Side by Side",
]
_AUTHORS = ["Staff Writer", "Laila Farahani", "Omid R.", "Editorial Desk"]
_CATEGORY_POOL = [
    "Iran meddling",
    "Iran Terrorism",
    "Iraq",
    "Iraq protest",
    "Iraqis' Uprising",
    "MEK",
    "Mujahedin-e Khalq",
    "Qassem Soleimani",
    "Maryam Rajavi",
    "NCRI",
    "PMOI",
    "Editor’s picks",
    "Human Rights & Justice",
]
_SENTENCES = [
    "Crowds gathered again this weekend in Baghdad, Karbala and Maysan.",
    "Students said their demands had not changed since October.",
    "Witnesses described tear gas and live fire near the bridges.",
    "The committee that called the marches asked for calm but would not stand down.",
    "Many marchers carried the national flag and nothing else.",
    "Rights monitors say the number of casualties is higher than reported.",
    "Several speakers named foreign interference as the root of the unrest.",
    "A café owner near Tahrir Square said business had stopped for a week.",
    "Officials promised an inquiry; protesters said they had heard that before.",
    "The marchers’ chants were aimed at militias as much as at the government.",
]


@dataclass
class Post:
    wp_id: int
    title: str
    slug: str
    author: str
    published: datetime
    modified: datetime
    categories: list[str]
    tags: list[str]
    excerpt_text: str
    paragraphs: list[str]
    image: str
    media: str | None  # media:content URL, when the item carries one
    enclosure: str | None

    @property
    def link(self) -> str:
        return f"{SITE}/{self.published:%Y/%m/%d}/{self.slug}/"

    @property
    def guid(self) -> str:
        return f"{SITE}/?p={self.wp_id}"

    @property
    def terms(self) -> list[str]:
        """WordPress RSS order: categories first, then tags."""
        return self.categories + self.tags

    @property
    def summary_html(self) -> str:
        if self.wp_id % 2:
            return f"{escape(self.excerpt_text, quote=False)} [&#8230;]"
        return (f'<p>{escape(self.excerpt_text, quote=False)}</p>\n<p><a class="more-link" '
                f'href="{self.link}">Continue Reading</a></p>')

    @property
    def content_html(self) -> str:
        body = [f"<p>{escape(p, quote=False)}</p>" for p in self.paragraphs]
        figure = (f'<figure class="wp-block-image size-large"><img decoding="async" src="{self.image}" '
                  f'alt="{escape(self.title)}" srcset="{self.image} 1024w, '
                  f'{self.image.replace(".jpg", "-300x200.jpg")} 300w" sizes="(max-width: 1024px) 100vw, '
                  f'1024px" /><figcaption>{escape(self.title, quote=False)}</figcaption></figure>')
        extra = ("<h2>What happens next</h2>\n<ul><li>More marches are planned.</li>"
                 "<li>The talks are stalled.</li></ul>\n<blockquote><p>“We will stay.”</p></blockquote>")
        return "\n".join([figure, *body, extra])

    @property
    def image_url(self) -> str:
        return self.media or self.enclosure or self.image


def _make_posts() -> list[Post]:
    rng = random.Random(SEED)
    start = datetime(2020, 2, 16, 9, 30, tzinfo=UTC)
    posts = []
    when = start
    for i, title in enumerate(_TITLES):
        wp_id = 3187 - i * 37
        terms = rng.sample(_CATEGORY_POOL[:11], rng.randint(3, 6))
        apostrophe = "’" if i % 2 == 0 else "'"
        tags = [f"Iraq protest against Iran{apostrophe}s meddling", *terms[2:]]
        cats = terms[:2]
        if i in (1, 5):
            cats.append("Editor’s picks")
        if i == 8:
            tags.append("Human Rights & Justice")
        slug = "-".join("".join(c for c in title.lower() if c.isalnum() or c == " ").split())[:60]
        image = f"{SITE}/wp-content/uploads/2020/0{1 + i % 3}/{slug[:24]}.jpg"
        posts.append(Post(
            wp_id=wp_id,
            title=title,
            slug=slug,
            author=_AUTHORS[i % len(_AUTHORS)],
            published=when,
            modified=when + timedelta(hours=rng.randint(0, 30)),
            categories=cats,
            tags=tags,
            excerpt_text=" ".join(rng.sample(_SENTENCES, 2)),
            paragraphs=[" ".join(rng.sample(_SENTENCES, 4)) for _ in range(rng.randint(4, 7))],
            image=image,
            media=f"{SITE}/wp-content/uploads/media-{wp_id}.jpg" if i in (2, 6) else None,
            enclosure=f"{SITE}/wp-content/uploads/enclosure-{wp_id}.jpg" if i == 4 else None,
        ))
        when -= timedelta(days=rng.randint(1, 4), hours=rng.randint(0, 20), minutes=rng.randint(0, 59))
    return posts


def _wp_title_entities(title: str) -> str:
    """Escape a title as WordPress's RSS does: texturized quotes as numeric references."""
    out = escape(title, quote=False)
    for char, ref in (("’", "&#8217;"), ("“", "&#8220;"), ("”", "&#8221;")):
        out = out.replace(char, ref)
    return out


def wp_rss(posts: list[Post], *, channel_title: str = "Iraq protest against Iran’s meddling – Archive") -> str:
    items = []
    for p in posts:
        cats = "".join(f"\n\t\t<category><![CDATA[{t}]]></category>" for t in p.terms)
        media = f'\n\t\t<media:content url="{p.media}" medium="image" />' if p.media else ""
        encl = (f'\n\t\t<enclosure url="{p.enclosure}" length="48213" type="image/jpeg" />'
                if p.enclosure else "")
        items.append(f"""\t<item>
\t\t<title>{_wp_title_entities(p.title)}</title>
\t\t<link>{p.link}</link>
\t\t<comments>{p.link}#respond</comments>
\t\t<dc:creator><![CDATA[{p.author}]]></dc:creator>
\t\t<pubDate>{format_datetime(p.published)}</pubDate>{cats}
\t\t<guid isPermaLink="false">{p.guid}</guid>
\t\t<description><![CDATA[{p.summary_html}]]></description>
\t\t<content:encoded><![CDATA[{p.content_html}]]></content:encoded>{media}{encl}
\t\t<wfw:commentRss>{p.link}feed/</wfw:commentRss>
\t\t<slash:comments>0</slash:comments>
\t</item>""")
    last = format_datetime(max(p.modified for p in posts)) if posts else "Sun, 16 Feb 2020 09:30:00 +0000"
    body = "\n".join(items)
    return f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
\txmlns:content="http://purl.org/rss/1.0/modules/content/"
\txmlns:wfw="http://wellformedweb.org/CommentAPI/"
\txmlns:dc="http://purl.org/dc/elements/1.1/"
\txmlns:atom="http://www.w3.org/2005/Atom"
\txmlns:sy="http://purl.org/rss/1.0/modules/syndication/"
\txmlns:slash="http://purl.org/rss/1.0/modules/slash/"
\txmlns:media="http://search.yahoo.com/mrss/"
\t>

<channel>
\t<title>{escape(channel_title, quote=False)}</title>
\t<atom:link href="{SITE}/tag/iraq-protest-against-irans-meddling/feed/" rel="self" type="application/rss+xml" />
\t<link>{SITE}</link>
\t<description>News from the Iraqi street</description>
\t<lastBuildDate>{last}</lastBuildDate>
\t<language>en-US</language>
\t<sy:updatePeriod>hourly</sy:updatePeriod>
\t<sy:updateFrequency>1</sy:updateFrequency>
\t<generator>https://wordpress.org/?v=6.4.2</generator>
{body}
\t</channel>
</rss>
"""


def atom(posts: list[Post]) -> str:
    entries = []
    for p in posts:
        cats = "".join(f'\n\t\t<category scheme="{SITE}" term="{escape(t)}" />' for t in p.terms)
        entries.append(f"""\t<entry>
\t\t<author><name>{escape(p.author, quote=False)}</name></author>
\t\t<title type="html"><![CDATA[{_wp_title_entities(p.title)}]]></title>
\t\t<link rel="alternate" type="text/html" href="{p.link}" />
\t\t<id>{p.guid}</id>
\t\t<updated>{p.modified.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>
\t\t<published>{p.published.strftime('%Y-%m-%dT%H:%M:%SZ')}</published>{cats}
\t\t<summary type="html"><![CDATA[{p.summary_html}]]></summary>
\t\t<content type="html" xml:base="{p.link}"><![CDATA[{p.content_html}]]></content>
\t</entry>""")
    body = "\n".join(entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?><feed
  xmlns="http://www.w3.org/2005/Atom"
  xml:lang="en-US"
  >
\t<title type="text">Iraq protest against Iran’s meddling – Archive</title>
\t<subtitle type="text">News from the Iraqi street</subtitle>
\t<updated>{max(p.modified for p in posts).strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>
\t<link rel="alternate" type="text/html" href="{SITE}" />
\t<id>{SITE}/feed/atom/</id>
\t<link rel="self" type="application/atom+xml" href="{SITE}/feed/atom/" />
\t<generator uri="https://wordpress.org/" version="6.4.2">WordPress</generator>
{body}
</feed>
"""


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def json_feed(posts: list[Post], *, version: str = "1.1") -> dict[str, object]:
    items: list[dict[str, object]] = []
    for p in posts:
        item: dict[str, object] = {
            "id": p.guid,
            "url": p.link,
            "title": p.title,
            "content_html": p.content_html,
            "summary": p.excerpt_text,
            "date_published": _iso(p.published),
            "date_modified": _iso(p.modified),
            "tags": p.terms,
            "image": p.image_url,
        }
        if version == "1.1":
            item["authors"] = [{"name": p.author}]
        else:
            item["author"] = {"name": p.author}
        items.append(item)
    return {
        "version": f"https://jsonfeed.org/version/{version}",
        "title": "Iraq protest against Iran’s meddling – Archive",
        "home_page_url": SITE,
        "feed_url": f"{SITE}/feed/json",
        "items": items,
    }


def _texturize(text: str) -> str:
    """Title/excerpt as WordPress's REST API renders them (``&`` as ``&#038;``)."""
    out = escape(text, quote=False).replace("&amp;", "&#038;")
    for char, ref in (("’", "&#8217;"), ("“", "&#8220;"), ("”", "&#8221;")):
        out = out.replace(char, ref)
    return out


def wp_rest(posts: list[Post]) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:
    tag_names = sorted({t for p in posts for t in p.tags})
    cat_names = sorted({c for p in posts for c in p.categories})
    tag_ids = {name: 40 + i for i, name in enumerate(tag_names)}
    cat_ids = {name: 2 + i for i, name in enumerate(cat_names)}
    rows = []
    for p in posts:
        rows.append({
            "id": p.wp_id,
            "date": p.published.strftime("%Y-%m-%dT%H:%M:%S"),
            "date_gmt": p.published.strftime("%Y-%m-%dT%H:%M:%S"),
            "guid": {"rendered": p.guid},
            "modified": p.modified.strftime("%Y-%m-%dT%H:%M:%S"),
            "modified_gmt": p.modified.strftime("%Y-%m-%dT%H:%M:%S"),
            "slug": p.slug,
            "status": "publish",
            "type": "post",
            "link": p.link,
            "title": {"rendered": _texturize(p.title)},
            "content": {"rendered": p.content_html + "\n", "protected": False},
            "excerpt": {"rendered": f"<p>{_texturize(p.excerpt_text)} [&hellip;]</p>\n", "protected": False},
            "author": 1 + p.wp_id % 3,
            "featured_media": 0,
            "categories": [cat_ids[c] for c in p.categories],
            "tags": [tag_ids[t] for t in p.tags],
            "class_list": ["post-" + str(p.wp_id), "type-post", "status-publish"],
            "_links": {"self": [{"href": f"{SITE}/wp-json/wp/v2/posts/{p.wp_id}"}]},
        })

    def terms(ids: dict[str, int], taxonomy: str) -> list[dict[str, object]]:
        return [{"id": tid, "name": escape(name, quote=False), "slug": f"term-{tid}",
                 "taxonomy": "post_tag" if taxonomy == "tag" else "category",
                 "link": f"{SITE}/{taxonomy}/term-{tid}/"} for name, tid in sorted(ids.items(), key=lambda kv: kv[1])]

    return rows, terms(tag_ids, "tag"), terms(cat_ids, "category")


def _replace_nth(text: str, old: str, new: str, n: int) -> str:
    """Replace the n-th (0-based) occurrence of ``old``."""
    pos = -1
    for _ in range(n + 1):
        pos = text.index(old, pos + 1)
    return text[:pos] + new + text[pos + len(old):]


def write_all() -> list[str]:
    posts = _make_posts()
    files: dict[str, bytes] = {}
    base = wp_rss(posts)
    files["wp-rss.xml"] = base.encode()
    files["atom.xml"] = atom(posts).encode()
    files["empty.xml"] = wp_rss([]).encode()
    files["bom.xml"] = b"\xef\xbb\xbf" + base.encode()
    files["blank-lines.xml"] = b"\n\n  \n" + base.encode()
    files["truncated.xml"] = base[: base.rindex("</item>")].encode()

    amp = base.replace("<title>Iraq protest against Iran’s meddling – Archive</title>", "<title>News & Views</title>")
    amp = _replace_nth(amp, f"<title>{_wp_title_entities(posts[2].title)}</title>",
                       "<title>Tom & Jerry go to R&D</title>", 0)
    amp = amp.replace(f"<link>{posts[4].link}</link>",
                      f"<link>{posts[4].link}?utm_source=rss&utm_medium=rss</link>")
    files["unescaped-amp.xml"] = amp.encode()

    files["undefined-entities.xml"] = base.replace(
        f"<title>{_wp_title_entities(posts[1].title)}</title>",
        "<title>Caf&eacute;&nbsp;news &hellip; today</title>").encode()
    files["missing-title-close.xml"] = base.replace(
        f"<title>{_wp_title_entities(posts[3].title)}</title>", f"<title>{_wp_title_entities(posts[3].title)}"
    ).encode()
    sixth = base.index(f"<guid isPermaLink=\"false\">{posts[5].guid}</guid>")
    cat_close = base.rindex("]]></category>", 0, sixth)
    files["missing-category-close.xml"] = (base[:cat_close] + "]]>" + base[cat_close + len("]]></category>"):]).encode()
    files["latin1-declared-utf8.xml"] = base.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode()
    files["utf8-declared-cp1252.xml"] = base.encode("cp1252", errors="xmlcharrefreplace")

    files["feed.json"] = json.dumps(json_feed(posts), indent=2, ensure_ascii=False).encode() + b"\n"
    files["feed-1.0.json"] = json.dumps(json_feed(posts[:3], version="1"), indent=2,
                                        ensure_ascii=False).encode() + b"\n"
    rows, tags, cats = wp_rest(posts)
    files["wp-rest-posts.json"] = json.dumps(rows, indent=1, ensure_ascii=False).encode() + b"\n"
    files["wp-rest-tags.json"] = json.dumps(tags, indent=1, ensure_ascii=False).encode() + b"\n"
    files["wp-rest-categories.json"] = json.dumps(cats, indent=1, ensure_ascii=False).encode() + b"\n"

    expected = [{
        "title": p.title,
        "url": p.link,
        "guid": p.guid,
        "tags": p.terms,
        "categories": p.categories,
        "post_tags": p.tags,
        "published": p.published.isoformat(),
        "updated": p.modified.isoformat(),
        "summary_html": p.summary_html,
        "content_html": p.content_html,
        "image_url": p.image_url,
        "author": p.author,
        "excerpt_text": p.excerpt_text,
    } for p in posts]
    files["expected.json"] = json.dumps(expected, indent=1, ensure_ascii=False).encode() + b"\n"

    for name, data in files.items():
        (HERE / name).write_bytes(data)
    return sorted(files)


if __name__ == "__main__":
    for name in write_all():
        print(name)
