"""What crosses the network: the shared message envelope and every payload codec (wire format v2).

:mod:`.envelope` is the header, shape records and tag every message kind shares, plus
:func:`~.envelope.read_common_header` — all a transport may read of a message. :mod:`.masks`
(MCE-PL's binary masks, packed bits or :mod:`.rice`-coded gaps), :mod:`.dense` (fp32 weights) and
:mod:`.sparse` (masked fp32 weights) are the payload codecs. numpy only: a torch-free device can
decode, and nothing here ever unpickles.
"""
