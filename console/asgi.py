"""The ASGI app each Hypercorn worker serves when `warmline serve` runs several
(one worker is served in-process: see console.cli.cmd_serve)."""

from console import logs
from console.app import create_app
from console.shutdown import close_sockets_on_sigterm

logs.configure()
app = create_app()
close_sockets_on_sigterm(app)
