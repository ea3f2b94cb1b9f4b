"""The node's web page (issue 8): search, transfers, network, library — live.

The node serves one page beside its control API on 127.0.0.1 (the control
port; ``PEERLAB_WEB_PORT`` adds another): plain HTML, CSS and JavaScript
modules shipped inside this package (``static/``), no build step and nothing
loaded from anywhere but the node.  The page logs in with the control token
(``<data_dir>/control.json``) or a password, then follows the node over
server-sent events.

Public API:

* :class:`WebSettings` (:mod:`.settings`): extra port, address opt-in, password;
* :class:`WebUI` (:mod:`.app`): the routes, plugged into
  :class:`peerlab.apps.control.ControlServer` as its ``web`` gate;
* :class:`~.hub.EventHub` (:mod:`.hub`): the live stream's events;
* :mod:`.views`: what the page shows (transfer rows, network panels, library),
  and :class:`~.views.WebNode`, what it asks of the node;
* :mod:`.auth`: password hashing, signed session cookies, CSRF tokens.
"""

from peerlab.web.app import WebUI
from peerlab.web.settings import WebSettings

__all__ = ["WebSettings", "WebUI"]
