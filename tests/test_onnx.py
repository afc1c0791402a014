"""ONNX: every family exports with torch.onnx.export(dynamo=True), in training form and fused, and onnxruntime
computes what eager PyTorch computes (to 1e-4 of the logits' scale)."""

import pytest
import timm
import torch

import optnets  # noqa: F401

from tests.helpers import SMALLEST, randomise_norms

ort = pytest.importorskip('onnxruntime', reason='pip install onnxruntime onnxscript')
pytest.importorskip('onnxscript', reason='pip install onnxscript')


@pytest.mark.timeout(600)
@pytest.mark.parametrize('form', ['trained', 'fused'])
@pytest.mark.parametrize('family', list(SMALLEST))
def test_the_exported_graph_runs_in_onnxruntime_as_in_pytorch(family, form, tmp_path):
    model = randomise_norms(timm.create_model(SMALLEST[family], coeff_init='theory', in_chans=3)).eval()
    with torch.no_grad():
        for _, p in model.named_coefficients():
            p.add_(0.1)  # off their initial values, as training leaves them
    if form == 'fused':
        model.fuse()
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(model, (x,), dynamo=True, verbose=False).save(str(tmp_path / 'model.onnx'))
    session = ort.InferenceSession(str(tmp_path / 'model.onnx'))
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
