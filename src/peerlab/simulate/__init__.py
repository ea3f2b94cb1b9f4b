"""``peerlab simulate``: scenarios that run peerlab's own nodes by the thousand
in the simulated runtime, and the report that compares the architectures.

An experiment module exposes one function with the shape of
:data:`peerlab.simulate.base.Experiment`; the scenario engine picks it by the
scenario's ``architecture`` and collects the :class:`~.base.ExperimentReport`
each run returns into ``report/comparison.md``.
"""
