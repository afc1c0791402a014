"""benchmarks/recon_cs.py's physics: every method of a table is scored on the same measurements."""

import warnings

import pytest
import torch

pytest.importorskip('deepinv', reason='the recon extra: pip install "optnets[recon]"')

from benchmarks import recon_cs  # noqa: E402


def test_every_method_is_scored_on_the_same_noisy_inpainting_measurements():
    physics, x = recon_cs.physics_of('inpainting', 0.25), torch.rand(4, 1, 28, 28)
    first = recon_cs.seeded(physics)(x)
    assert not torch.equal(physics(x), first)  # the noise is drawn, not fixed
    assert torch.equal(recon_cs.seeded(physics)(x), first)


def test_noiseless_compressed_sensing_is_seeded_without_a_warning():
    physics = recon_cs.physics_of('compressed_sensing', 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        recon_cs.seeded(physics)
