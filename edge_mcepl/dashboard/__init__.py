"""The live lab dashboard: ``edge-mcepl dashboard`` (and ``broker --dashboard``, ``lab --dashboard``).

Roles, one module each: :mod:`.view` is the page's state and its patches; :mod:`.sources` feed a
view (an abstract base, a live lab over MQTT as the read-only observer, a finished run directory,
and the factory that picks one); :mod:`.server` serves the page (``static/``: HTML, JS, CSS and the
vendored uPlot charts — nothing from the internet) and streams the view to it. Only the server
needs the ``dashboard`` extra (starlette, uvicorn): a device running ``join`` installs none of it.
"""
