"""Warmline's process entry points: the app factory, the ASGI module, the `warmline`
command, the demo and the embedded Redis. They wire console/ and webhooks/ together
and may import anything of the product; only the demo starts the simulator."""
