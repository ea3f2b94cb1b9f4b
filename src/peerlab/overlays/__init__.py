"""Multi-peer logic, written only against :class:`peerlab.runtime.Runtime`."""
