"""The app stops at once while its start-up reconcile is under way: a cancellation
that reaches one of its Redis reads comes back as redis-py's timeout error, which the
reconcile loop used to log and sleep off, holding the app's shutdown past Quart's
(and a platform's) limit."""

from __future__ import annotations

import pytest

from console.config import BusinessHours
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import AppVoice
from warmline.app import create_app

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("attempt", range(8))
async def test_the_app_stops_promptly_right_after_serving_a_call(
    twilio, redis, redis_server, attempt
):
    # Closed hours: the quickest Voice URL answer, so the app stops while the
    # start-up reconcile still talks to Redis and the REST double.
    settings = make_settings(
        api_base_url=twilio.base_url, business_hours=BusinessHours.parse("Mon 00:00-00:01")
    )
    app = create_app(settings, redis_url=redis_server.url)
    # test_app() fails if the app's shutdown takes longer than Quart's 6 s.
    async with app.test_app(), app.test_client() as client:
        await AppVoice(client, twilio, app, PUBLIC_BASE_URL).call_in()
