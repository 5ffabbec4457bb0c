"""Where a simulated lab's agents compute: this process (:class:`~edge_mcepl.simulator.Simulator`) or Ray workers.

Like Flower's simulation engines: an abstract base that owns the run loop (:mod:`.base`), the
in-process implementation (the simulator), a Ray implementation (:mod:`.ray_backend`, built on the
process-independent :mod:`.shard`) and a factory (:mod:`.factory`) side by side.
"""
