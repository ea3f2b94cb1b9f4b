"""Where the web page listens and how one logs in (issue 8, item 1).

By default the page is served by the control server itself, on
``127.0.0.1:<control_port>`` (``--control-port`` picks the port).  Optional
extras, from the environment or from ``peerlab node``'s flags
(``--web-port``, ``--web-bind``, ``--web-open-to-network``, ``--web-password``;
a flag wins over its variable)::

    PEERLAB_WEB_PORT=8080          also serve the page on 127.0.0.1:8080
    PEERLAB_WEB_HOST=0.0.0.0       serve it on another address too (needs both
    PEERLAB_WEB_OPEN=1             this explicit opt-in and a password)
    PEERLAB_WEB_PASSWORD=...       a password for the login form, besides the
                                   control token (the page's Settings can also
                                   store one, hashed, in <data_dir>/web.json)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from peerlab.errors import ConfigError

ENV_PORT = "PEERLAB_WEB_PORT"
ENV_HOST = "PEERLAB_WEB_HOST"
ENV_OPEN = "PEERLAB_WEB_OPEN"
ENV_PASSWORD = "PEERLAB_WEB_PASSWORD"
#: Shortest password accepted for the login form: it guards the whole node.
MIN_PASSWORD_CHARS = 8
#: Longest password accepted (scrypt hashes anything, but a bound is a bound).
MAX_PASSWORD_CHARS = 256
_TRUE = ("1", "true", "yes", "on")


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: a host only this machine reaches."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_password(password: str, where: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ConfigError(
            f"{where}: a web password needs {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters"
        )
    return password


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The web page's listening and login settings.

    ``port`` 0 means no extra port (the page is on the control port).
    ``host`` other than loopback needs ``open_to_network`` and a password:
    the page drives the whole node.
    """

    #: An extra port for the page (0: none; the control port serves it anyway).
    port: int = 0
    #: The address of that extra port (loopback unless opened on purpose).
    host: str = "127.0.0.1"
    #: The explicit opt-in to serve the page beyond this machine.
    open_to_network: bool = False
    #: A login password besides the control token (``None``: the stored one, if any).
    password: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"web port {self.port} is out of range 0-65535")
        if not is_loopback(self.host):
            if not self.open_to_network:
                raise ConfigError(
                    f"the web page serves loopback only; serving it on {self.host} needs "
                    f"the explicit opt-in (--web-open-to-network or {ENV_OPEN}=1) and a password"
                )
            if self.port == 0:
                raise ConfigError(f"serving the web page on {self.host} needs a web port")
        if self.password is not None:
            check_password(self.password, ENV_PASSWORD)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebSettings:
        """The settings from ``PEERLAB_WEB_*`` (see the module docstring)."""
        port_text = env.get(ENV_PORT, "").strip()
        if port_text and not port_text.isdigit():
            raise ConfigError(
                f"environment variable {ENV_PORT}: expected a port, got {port_text!r}"
            )
        host = env.get(ENV_HOST, "").strip() or "127.0.0.1"
        return cls(
            port=int(port_text or 0),
            host=host,
            open_to_network=env.get(ENV_OPEN, "").strip().lower() in _TRUE,
            password=env.get(ENV_PASSWORD) or None,
        )
