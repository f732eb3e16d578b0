"""The supervisor's lost-message search reads kombu's Redis transport layout (queue
priority lists, the ``unacked`` hash and its ``unacked_index`` of delivery times): pinned
here to kombu's own constants, so a kombu release that changes them fails this test
instead of silently finding no messages."""

from __future__ import annotations

import kombu
import kombu.transport.redis as transport

from workers import supervisor


def test_the_layout_read_is_kombus_own():
    channel = transport.Channel
    assert channel.sep == supervisor._PRIORITY_SEP
    assert channel.unacked_key == supervisor._UNACKED
    assert channel.unacked_index_key == supervisor._UNACKED_INDEX  # when each was taken
    # the lists beside the queue's own: one per non-zero priority step
    assert tuple(channel.priority_steps[1:]) == supervisor._PRIORITIES
    assert channel.priority_steps[0] == 0
    # the release range this was read against (scripts/constraints.txt pins one in it)
    major, minor = (int(x) for x in kombu.__version__.split(".")[:2])
    assert (5, 3) <= (major, minor) < (6, 0), kombu.__version__


def test_only_a_redis_broker_is_searched_for_lost_messages(monkeypatch):
    from core import celery_app
    from core.settings import get_settings

    s = get_settings()
    monkeypatch.setattr(s, "broker_url", "amqp://guest:guest@127.0.0.1:5672//")
    assert celery_app.broker_is_redis() is False
    monkeypatch.setattr(s, "broker_url", None)
    assert celery_app.broker_is_redis() is (s.redis_url.startswith("redis"))
