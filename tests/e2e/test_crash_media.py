"""A crash between the image upload and the post: the real ``tagrelay run`` is SIGKILLed right after its
upload succeeded, either as the post request arrives (the post never made) or once the platform made the
post but before its answer came back; a restart then delivers the post exactly once, with its image and
alt text. Kills are triggered by the fakes' requests, never by timers.

What stays behind is said, not hidden: a second upload after an answer-lost crash is deleted on Mastodon
(the Idempotency-Key returns the first status) and expires at X; an upload whose post never left stays
unattached until the platform drops it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.service import Db, Platforms, Service, platforms, wait_until, write_config
from tests.fakes.http import DROP, Request
from tests.fakes.images import ImageServer, image_response, jpeg
from tests.fakes.mastodon_api import MEDIA_V2
from tests.fakes.telegram_api import Fault
from tests.fakes.x_api import MEDIA_UPLOAD

ALT = "Protesters outside the embassy, seen from a rooftop"
PENDING = {"queued", "failed", "sending"}


def uploads(fakes: Platforms, channel: str) -> int:
    return len(fakes.mastodon.media) if channel == "masto" else len(fakes.x.media)


def posted(fakes: Platforms, channel: str, title: str) -> list[tuple[str, ...]]:
    """The media ids of every post about ``title`` on the channel's platform."""
    if channel == "masto":
        with fakes.mastodon.lock:
            return [s.media_ids for s in fakes.mastodon.statuses if title in s.text]
    with fakes.x.lock:
        return [t.media_ids for t in fakes.x.tweets if title in t.text]


def kill_at(service: Service, path: str) -> Callable[[Request], object]:
    def hook(request: Request) -> object:
        if request.method == "POST" and request.path == path:
            service.kill_now()
            return DROP  # the service is gone: the post is never made
        return None
    return hook


@pytest.mark.parametrize("when", ["post-never-made", "answer-lost"])
@pytest.mark.parametrize("channel", ["masto", "x"])
@pytest.mark.timeout(180)
def test_a_crash_between_upload_and_post_neither_loses_nor_doubles_it(tmp_path: Path, channel: str,
                                                                      when: str) -> None:
    with platforms() as fakes, ImageServer() as images:
        image = images.serve("/hero.jpg", image_response(jpeg(400, 300)))
        config = write_config(tmp_path, fakes, x_extra="send_image = true")
        db = Db(config)
        fake, route = fakes.fakes[channel], fakes.route(channel)
        service = Service(config).start()
        try:
            wait_until(db.baseline_done, 30, "the first poll (the baseline)")
            fault: Fault | None = None
            if when == "post-never-made":
                fake.on_request = kill_at(service, route)
            else:
                fault = Fault(hold=threading.Event(), process=True, match=route)
                fake.add_fault(fault)
            fakes.archive.add_post(title="With image", tags=["Iraq"], image=image, image_alt=ALT, slug="with-image")
            if fault is not None:
                assert fake.wait_for(lambda: fault.times == 0, 60), service.tail()  # made, answer held
                service.kill_now()
            assert service.wait(60) == -signal.SIGKILL, service.tail()
            if fault is not None and fault.hold is not None:
                fault.hold.set()
            fake.on_request = None
        finally:
            service.stop()
        assert uploads(fakes, channel) == 1  # the kill came after the upload
        assert posted(fakes, channel, "With image") == ([] if when == "post-never-made" else
                                                        [tuple(_ids(fakes, channel)[:1])])

        service = Service(config).start()
        try:
            wait_until(lambda: set(db.statuses()) == {"sent"}, 60, "every delivery sent after the restart")
            service.signal(signal.SIGTERM)
            assert service.wait(20) == 0, service.tail()
        finally:
            service.stop()

        for chan in ("masto", "x"):
            made = posted(fakes, chan, "With image")
            assert len(made) == 1, f"{chan}: {len(made)} posts"  # not lost, not twice
            (media_ids,) = made
            assert len(media_ids) == 1, f"{chan} posted without its image"
        first, second = _ids(fakes, channel)[:2]
        (attached,) = posted(fakes, channel, "With image")
        if when == "post-never-made":
            assert attached == (second,)  # the restart's upload; the first was never attached
        else:
            assert attached == (first,)  # the post the first run made
            if channel == "masto":
                assert fakes.mastodon.media[second].deleted  # the unused second upload is cleaned up
        described = {m.description for m in fakes.mastodon.media.values()} if channel == "masto" else \
            {m.alt_text for m in fakes.x.media.values()}
        assert described == {ALT}
        assert len(fake.seen("POST", MEDIA_V2 if channel == "masto" else MEDIA_UPLOAD)) == 2


def _ids(fakes: Platforms, channel: str) -> list[str]:
    with fakes.mastodon.lock, fakes.x.lock:
        return list(fakes.mastodon.media) if channel == "masto" else list(fakes.x.media)
