"""The app's make_response: a view's own Response goes out untouched (quart_schema's
conversion skipped), and every other return value is still converted."""

from __future__ import annotations

from dataclasses import dataclass

from quart import Response


@dataclass
class Shape:
    snake_case: int


async def test_a_response_goes_out_as_it_is_and_a_dataclass_is_still_converted(app) -> None:
    own = Response("<Response/>", 200, mimetype="text/xml")
    async with app.app_context():
        assert await app.make_response(own) is own
        converted = await app.make_response((Shape(3), 201))
        assert converted.status_code == 201
        assert await converted.get_json() == {"snake_case": 3}
