"""A device lab's MQTT broker: credentials and ACL, mosquitto, the built-in fallback, and starting one.

:mod:`.credentials` (users, passwords, who may touch which topic), :mod:`.mosquitto` (the real
broker, configured for one lab), :mod:`.python_broker` (the zero-install fallback) and
:mod:`.launcher` (:func:`~.launcher.start_broker`: whichever is available).
"""
