"""The ASGI app each Hypercorn worker serves when `warmline serve` runs several
(one worker is served in-process: see warmline.cli.cmd_serve)."""

from warmline import logs
from warmline.app import create_app
from warmline.heap import freeze_start_up_heap
from warmline.proxies import served
from warmline.shutdown import close_sockets_on_sigterm

logs.configure()
quart_app = create_app()
close_sockets_on_sigterm(quart_app)
freeze_start_up_heap(quart_app)  # last: after every extension has started
app = served(quart_app)
