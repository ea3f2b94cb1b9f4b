"""peerlab: the classic peer-to-peer systems, implemented and measured.

Layers (imports flow downwards only)::

    cli/ web/ apps/          user-facing: commands, the node daemon, the demo
    overlays/                multi-peer logic written against the runtime interface
    proto/                   sans-I/O state machines, one per connection type
    wire/                    codecs only
    runtime/ sim/ storage/   the two worlds; file stores; the share catalog
"""

__version__ = "0.1.0"
