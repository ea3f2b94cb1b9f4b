"""The ``peerlab`` command line (click + rich): :func:`peerlab.cli.main.main`."""
