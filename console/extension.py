"""Typed access to what an app is built from, its settings and its parts, instead of
looking them up by string in Quart's ``app.config`` and ``app.extensions``."""

from __future__ import annotations

from typing import ClassVar, Self

from quart import Quart, current_app

from console.config import Settings

SETTINGS_KEY = "WARMLINE"


def settings_of(app: Quart) -> Settings:
    """The settings ``app`` was built with."""
    return app.config[SETTINGS_KEY]


def get_settings() -> Settings:
    """The settings of the app handling the current request."""
    return settings_of(current_app)


class Extension:
    """A part of the app, registered under its class's ``key`` and found again by type."""

    key: ClassVar[str]

    def register(self, app: Quart) -> None:
        app.extensions[self.key] = self

    @classmethod
    def of(cls, app: Quart) -> Self:
        """The instance ``app`` was built with."""
        part = app.extensions[cls.key]
        if not isinstance(part, cls):
            raise TypeError(f"app.extensions[{cls.key!r}] is not a {cls.__name__}")
        return part

    @classmethod
    def current(cls) -> Self:
        """The instance of the app handling the current request."""
        return cls.of(current_app)


class ServingExtension(Extension):
    """A part with work to do while the app serves: ``start`` runs before the first
    request (connections, background tasks), ``stop`` after the last."""

    app: Quart | None = None

    def init_app(self, app: Quart) -> None:
        self.app = app
        self.register(app)
        app.before_serving(self.start)
        app.after_serving(self.stop)

    async def start(self) -> None:
        """Open what the part needs while the app serves."""

    async def stop(self) -> None:
        """Close what ``start`` opened."""
