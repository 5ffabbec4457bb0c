"""The project's benchmarks and paper reproduction: scripts run from a checkout, never installed.

A package only so that tests import its modules normally (``from benchmarks.reproduction import
report``; pytest puts the checkout root on ``sys.path``). It stays out of the installed
``edge_mcepl`` distribution (``[tool.setuptools.packages.find]`` includes ``edge_mcepl*`` only):
it reads the repository's ``examples/``, ``results/`` and reference setting and writes ``docs/``,
none of which a device running an agent has.
"""
