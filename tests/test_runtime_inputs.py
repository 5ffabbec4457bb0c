"""runtime.py input handling: wrong shapes are one-line errors; float64 and a single image are accepted."""

from __future__ import annotations

import numpy as np
import pytest

from edge_mcepl import runtime
from edge_mcepl.cli import main
from edge_mcepl.export.graph import trace_ops
from edge_mcepl.export.onnx_export import save_model, to_onnx
from edge_mcepl.export.prune import prune_network
from edge_mcepl.nn.weights import generate_fixed_weights
from edge_mcepl.nn.zoo import build_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    template = build_model("small-cnn")
    fixed = generate_fixed_weights(template, "small-cnn", 4)
    masks = {name: np.ones(tuple(layer.weight.shape), np.float32) for name, layer in template.masked_layers()}
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    save_model(to_onnx(prune_network(trace_ops(template), {k: v.numpy() for k, v in fixed.tensors.items()}, masks,
                                     input_shape=(1, 28, 28), num_classes=10, elu_logits=False)), path)
    return path


def test_wrong_shape_is_one_line_exit_2(model_path, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((3, 3, 32, 32), np.float32))
    assert main(["infer", str(model_path), str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(3, 32, 32)" in err[0] and "(1, 28, 28)" in err[0]


def test_float64_batch_and_single_image_give_the_same_predictions(model_path):
    session = runtime.open_session(model_path)
    info = runtime.model_info(session)
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28))
    batch_pred, logits = runtime.predict(session, x.astype(np.float32), batch_size=3)
    assert logits.shape == (4, 10) and batch_pred.shape == (4,)
    one, _ = runtime.predict(session, runtime.load_inputs(_save(x[2], model_path.parent / "one.npy"), info))
    assert one.tolist() == [batch_pred[2]]


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(runtime.UserError, match="model file not found"):
        runtime.open_session(tmp_path / "nope.onnx")


def _save(array, path):
    np.save(path, array)
    return path
