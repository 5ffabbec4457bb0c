"""How agents reach each other: transports, MQTT topics and clients, and the lab's broker.

:mod:`.transport` is the contract the agent sees (and the simulator's in-memory transport);
:mod:`.topics`, :mod:`.client` and :mod:`.mqtt_transport` carry it over MQTT; :mod:`.broker`
runs the broker. What the bytes mean is :mod:`edge_mcepl.wire`'s business, never this package's.
"""
