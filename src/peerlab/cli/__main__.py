"""``python -m peerlab.cli``: the same as the ``peerlab`` console script."""

from peerlab.cli.main import main

main()
