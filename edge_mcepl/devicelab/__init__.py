"""The device lab: the lab config on the broker, one ``join`` process per device, the multi-process lab.

Roles:

- the **coordinator** (``edge-mcepl broker CONFIG`` or ``edge-mcepl lab CONFIG``) publishes the lab
  config envelope, retained, on ``edge-mcepl/<lab>/config`` (:mod:`.envelope`);
- each **device** runs ``edge-mcepl join`` (:mod:`.join`): it reads and validates the envelope,
  applies its device profile (:mod:`.plan`), builds its agent with exactly
  :func:`~edge_mcepl.simulator.build_agent` — the simulator's code, so the masks are the simulator's —
  refuses to train if the weights fingerprint differs, then runs rounds over MQTT with a round
  deadline, bounded staleness and a checkpoint after every round;
- ``edge-mcepl lab`` (:mod:`.launcher`) does all of it on one machine: a broker, N join processes,
  and one run directory in the simulator's format (:func:`edge_mcepl.run_dir.merge_lab_run`);
  :mod:`.session` plans each start or ``--resume`` from the command line and ``lab.json``.
"""
