"""benchmarks/mutations.py stays runnable: each mutation's text is in its file exactly once (a reformatted or moved
formula would otherwise leave the mutation with nothing to change)."""

import pytest

from benchmarks.mutations import MUTATIONS, ROOT


@pytest.mark.parametrize('name, path, original', [m[:3] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_every_mutation_finds_its_text_exactly_once(name, path, original):
    assert (ROOT / path).read_text().count(original) == 1
