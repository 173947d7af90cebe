"""The ASGI app the Procfile's Hypercorn serves."""

from console.app import create_app

app = create_app()
