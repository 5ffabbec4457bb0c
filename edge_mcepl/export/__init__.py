"""Export: an agent's (seed, mask) → a physically smaller dense network → ONNX + manifest.

One idea per module:

- :mod:`.graph` — a zoo model's forward pass as a flat list of ops (traced, not hand-copied);
- :mod:`.prune` — dead filters/rows found and removed, with the exactness argument;
- :mod:`.cost` — what a structure costs once exported (the retention policy sizes devices with it);
- :mod:`.torch_model` — the pruned network as a plain torch module (the reference for tests);
- :mod:`.onnx_export` — the pruned network as an ONNX graph of standard ops;
- :mod:`.run` — reading a run directory: state, config, masks, regenerated weights;
- :mod:`.verify` — onnxruntime against the masked torch model; size and parameter checks;
- :mod:`.data` — the agent's local test images, for the exported model's accuracy;
- :mod:`.quantize` — optional int8 via onnxruntime's quantization tools;
- :mod:`.manifest` — ``manifest.json``;
- :mod:`.pipeline` — one agent end to end (what ``edge-mcepl export`` calls).
"""
