"""A serving process freezes what its start-up made (warmline/heap.py): full garbage
collections then walk only what serving made since, not every module and route."""

from __future__ import annotations

import gc

from warmline.app import create_app
from warmline.heap import freeze_start_up_heap


def tracked(obj: object) -> bool:
    """Whether a collection of generations 0-2 would walk ``obj`` (frozen ones: not)."""
    return any(o is obj for o in gc.get_objects())


async def test_start_up_is_frozen_and_what_serving_makes_is_still_collected(
    settings, redis_server
) -> None:
    app = create_app(settings, redis_url=redis_server.url)
    freeze_start_up_heap(app)
    assert gc.get_freeze_count() == 0 and tracked(app)
    try:
        async with app.test_app():
            assert gc.get_freeze_count() > 1000
            assert not tracked(app) and not tracked(app.url_map)
            made_while_serving: list[object] = []
            assert tracked(made_while_serving)
            async with app.test_client() as client:
                assert (await client.get("/healthz")).status_code == 200
    finally:
        gc.unfreeze()
