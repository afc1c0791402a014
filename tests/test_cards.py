"""Model cards are generated: each equals its rendering of cards.json, and cards.json equals what it measures."""

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / 'model_cards'
cards = SimpleNamespace(
    **runpy.run_path(str(ROOT / 'tools' / 'model_cards.py'))
)  # a repository tool, not the package's


def test_cards_are_the_rendering_of_their_json():
    data = json.loads((CARDS / 'cards.json').read_text())
    rendered = cards.render(data)
    assert set(rendered) == {p.name for p in CARDS.glob('*.md')}
    for name, text in rendered.items():
        assert (CARDS / name).read_text() == text, f'{name} was edited by hand or is stale: regenerate it'


def test_every_number_in_cards_json_is_measured_again():
    """Parameters and GMACs are recounted, hashes and accuracies re-read from the manifest and runs.json."""
    assert json.loads((CARDS / 'cards.json').read_text()) == json.loads(json.dumps(cards.collect()))
