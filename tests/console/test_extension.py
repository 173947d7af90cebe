"""The app's settings and parts are found by type: every part the factory builds is
registered once, under its own key, and comes back as an instance of its class."""

from __future__ import annotations

import pytest
from quart import Quart

from console.extension import Extension, get_settings, settings_of
from console.realtime.hub import Hub
from console.realtime.presence import Presence
from console.redis_ext import RedisExtension
from console.telephony.gateway import TwilioGateway
from console.telephony.reconcile import AutoReconcile
from console.telephony.runner import Runner
from console.web.metrics import Metrics
from tests.conftest import make_settings
from warmline.app import create_app

PARTS = (RedisExtension, TwilioGateway, Runner, AutoReconcile, Hub, Presence, Metrics)


def test_every_part_of_the_app_is_found_by_its_type() -> None:
    settings = make_settings()
    app = create_app(settings, redis_url="redis://127.0.0.1:9")
    keys = [part.key for part in PARTS]
    assert len(set(keys)) == len(keys), "two parts share a key"
    for part in PARTS:
        assert type(part.of(app)) is part
    assert settings_of(app) is settings


async def test_the_current_apps_settings_and_parts() -> None:
    settings = make_settings()
    app = create_app(settings, redis_url="redis://127.0.0.1:9")
    async with app.app_context():
        assert get_settings() is settings
        assert Runner.current() is Runner.of(app)


def test_a_part_under_the_wrong_key_is_refused() -> None:
    class Other(Extension):
        key = "runner"

    app = create_app(make_settings(), redis_url="redis://127.0.0.1:9")
    with pytest.raises(TypeError, match="not a Other"):
        Other.of(app)
    with pytest.raises(KeyError):
        Hub.of(Quart("bare"))
