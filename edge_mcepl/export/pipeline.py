"""One agent end to end: mask → pruned network → ONNX → verified → manifest (what the CLI calls).

Files are written into a temporary folder beside the target and moved into place only when every
check passed, so a failed export leaves nothing half-written behind (an older export of the same
agent stays as it was).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import runtime
from ..errors import UserError
from .cost import ALIGN
from .data import AgentData, RunData
from .graph import trace_ops
from .manifest import build_manifest, file_entry, write_manifest
from .onnx_export import save_model, to_onnx
from .prune import PrunedNetwork, prune_network
from .run import RunInfo, layer_arrays, load_agent_masks, load_run, masked_zoo_model, regenerate_weights
from .verify import check_equivalence, check_smaller, compare, verification_inputs

MODEL_FILE, DENSE_FILE, INT8_FILE, MANIFEST_FILE = "model.onnx", runtime.DENSE_SIBLING, "model.int8.onnx", "manifest.json"


def agent_dir_name(agent_id: int) -> str:
    return f"agent_{agent_id:03d}"


class Exporter:
    """Everything shared by the agents of one run: weights (regenerated once), op list, data."""

    def __init__(self, run_dir: str | Path, *, data_dir: str | None = None, threads: int = 1,
                 verify_inputs: int = 256, align: int = ALIGN, log=print) -> None:
        self.run: RunInfo = load_run(run_dir)
        self.template, self.fixed = regenerate_weights(self.run)
        self.ops = trace_ops(self.template, self.run.model_name)
        self.data = RunData(self.run, self.template.input_shape, data_dir, log=lambda m: None)
        self.threads, self.verify_inputs, self.align, self.log = threads, verify_inputs, align, log
        torch.set_num_threads(threads)

    def prune(self, agent_id: int, remove: bool = True,
              align: int | None = None) -> tuple[PrunedNetwork, list[np.ndarray]]:
        """The agent's network with dead filters removed (``align``: default the exporter's)."""
        masks = load_agent_masks(self.run, agent_id, self.template)
        weights, by_layer = layer_arrays(self.template, self.fixed, masks)
        try:
            net = prune_network(self.ops, weights, by_layer, input_shape=self.template.input_shape,
                                num_classes=self.run.num_classes, elu_logits=self.run.elu_logits, remove=remove,
                                align=self.align if align is None else align)
        except UserError as exc:
            raise UserError(f"agent {agent_id}: {exc}") from None
        return net, masks

    def export_agent(self, agent_id: int, out_root: Path, *, write_dense: bool = True,
                     quantize: str | None = None) -> dict:
        """Export one agent into ``out_root/agent_NNN/``; returns its manifest."""
        entry = self.run.agent(agent_id)
        what = f"agent {agent_id}"
        pruned, masks = self.prune(agent_id)
        dense, _ = self.prune(agent_id, remove=False)
        agent_data = self.data.agent(agent_id)
        real = agent_data.test_images if isinstance(agent_data, AgentData) else None
        inputs = verification_inputs(self.template.input_shape, self.verify_inputs, real, seed=agent_id)
        reference = self._masked_logits(masks, inputs)

        out_root.mkdir(parents=True, exist_ok=True)
        final = out_root / agent_dir_name(agent_id)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=out_root))
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary folder
        try:
            doc = (f"edge-mcepl {self.run.model_name}, agent {agent_id}, weights fingerprint "
                   f"{self.run.fingerprint.hex()}: dead filters physically removed")
            size = save_model(to_onnx(pruned, doc), tmp / MODEL_FILE)
            dense_model = to_onnx(dense, doc.replace("physically removed", "kept (dense reference)"))
            dense_size = save_model(dense_model, tmp / DENSE_FILE) if write_dense else len(dense_model.SerializeToString())
            session = runtime.open_session(tmp / MODEL_FILE, self.threads)
            run_onnx = lambda x: runtime.run_logits(session, x)  # noqa: E731
            verification = {"pruned": check_equivalence(run_onnx, reference, inputs, what).to_dict()}
            if write_dense:
                dense_session = runtime.open_session(tmp / DENSE_FILE, self.threads)
                verification["dense"] = check_equivalence(lambda x: runtime.run_logits(dense_session, x), reference,
                                                          inputs, f"{what} (dense export)").to_dict()
            check_smaller(pruned, dense, size, dense_size, what)
            files = {"model": file_entry(tmp / MODEL_FILE),
                     "dense": file_entry(tmp / DENSE_FILE) if write_dense else {"name": None, "bytes": dense_size}}
            accuracy = self._accuracy(agent_id, session, agent_data)
            quantization = None
            if quantize == "int8":
                quantization = self._quantize(tmp, session, inputs, agent_data, accuracy)
                files["int8"] = file_entry(tmp / INT8_FILE)
            elif quantize is not None:
                raise UserError(f"--quantize {quantize!r}: only int8 is supported")
            why = self._why_none_removed(agent_id) if pruned.filters_removed == 0 else None
            manifest = build_manifest(agent=entry, run=self.run, pruned=pruned, files=files, align=self.align,
                                      verification=verification, accuracy=accuracy, quantization=quantization,
                                      why_none_removed=why)
            write_manifest(manifest, tmp / MANIFEST_FILE)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return manifest

    def _why_none_removed(self, agent_id: int) -> str:
        """Why no filter was removed, and what would change that (the advice of docs/export.md's tuning).

        Without it a model.onnx exactly as large as dense.onnx is a puzzle: the reason is in the run's
        settings or in ``--align``, not in the export.
        """
        dead = self.prune(agent_id, align=1)[0].filters_removed if self.align > 1 else 0
        if dead:
            return (f"{dead} dead filter(s) kept, as --align {self.align} prunes a layer only when a whole block of "
                    f"{self.align} filters goes (--align 1 removes them; onnxruntime may run a partial block slower)")
        threshold = self.run.config.algorithm.min_kept_per_filter
        if not threshold:
            return ("the run has no filter-drop rule (algorithm.min_kept_per_filter unset, as in the reference "
                    "preset, or 0), so no filter died; train with --preset structured (threshold 20, for alexnet-cifar) "
                    "or set algorithm.min_kept_per_filter (small-cnn: 1, its conv1 filters have 9 weights) — "
                    "docs/export.md")
        return (f"no filter kept {threshold} or fewer weights (algorithm.min_kept_per_filter) at retention "
                f"{self.run.agent(agent_id).retention_conv:g}; a lower retention or a higher threshold removes "
                "filters — docs/export.md")

    @torch.no_grad()
    def _masked_logits(self, masks: list[np.ndarray], inputs: np.ndarray) -> np.ndarray:
        model = masked_zoo_model(self.run, self.fixed, masks)
        return torch.cat([model.logits(chunk) for chunk in torch.from_numpy(inputs).split(128)]).numpy()

    def _accuracy(self, agent_id: int, session, agent_data: AgentData | str) -> dict:
        if isinstance(agent_data, str):
            return {"skipped": agent_data}
        result = {"pruned_onnx": runtime.accuracy(session, agent_data.test_images, agent_data.test_labels),
                  "test_images": int(len(agent_data.test_labels)), "data": agent_data.description}
        in_run = _accuracy_in_run(self.run, agent_id)
        if in_run is not None:
            result["in_run"] = in_run
        return result

    def _quantize(self, tmp: Path, session, inputs: np.ndarray, agent_data: AgentData | str,
                  accuracy: dict) -> dict:
        from .quantize import METHOD, quantize_int8

        calibration = agent_data.train_images if isinstance(agent_data, AgentData) else inputs
        quantize_int8(tmp / MODEL_FILE, tmp / INT8_FILE, calibration)
        int8 = runtime.open_session(tmp / INT8_FILE, self.threads)
        moved = compare(runtime.run_logits(int8, inputs), runtime.run_logits(session, inputs))
        result = {"method": METHOD,
                  "calibration": (f"{len(calibration)} of the agent's train images"
                                  if isinstance(agent_data, AgentData) else
                                  f"{len(calibration)} noise inputs (no data; accuracy unknown)"),
                  "vs_fp32": {"max_abs_diff": moved.max_abs_diff, "argmax_agreement": moved.argmax_agreement,
                              "inputs": moved.inputs}}
        if isinstance(agent_data, AgentData):
            acc = runtime.accuracy(int8, agent_data.test_images, agent_data.test_labels)
            result["accuracy"] = {"fp32": accuracy["pruned_onnx"], "int8": acc,
                                  "change": acc - accuracy["pruned_onnx"]}
        latency = {}
        for batch in (1, 64):
            timings = runtime.compare_latency({"fp32": session, "int8": int8}, batch, seconds=0.5, min_runs=10)
            latency[f"batch_{batch}"] = {"fp32": timings["fp32"].to_dict(), "int8": timings["int8"].to_dict(),
                                         "speedup_p50": round(timings["fp32"].p50_ms / timings["int8"].p50_ms, 3)}
        result["latency"] = {"threads": self.threads, **latency}
        return result


def _accuracy_in_run(run: RunInfo, agent_id: int) -> float | None:
    """The agent's last evaluated accuracy in the run's metrics (same mask as the export)."""
    path = run.run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    with path.open() as f:
        for line in f:
            if '"accuracy"' in line:
                row = json.loads(line)
                if row.get("agent") == agent_id and "accuracy" in row:
                    last = row["accuracy"]
    return last
