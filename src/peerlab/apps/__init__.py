"""User-facing applications built on the cores: the node daemon, its control
API, its settings, and the demo network.

asyncio lives here (and in ``peerlab.cli``), never in the cores below.
"""
