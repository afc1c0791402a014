"""The documentation site: it builds strictly, and every table in it is generated from its source (the registry,
the results a benchmark wrote), so that a page and its source never disagree."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'


def page(name: str) -> list[str]:
    """A docs page's lines as the site shows them: a ``--8<-- "FILE"`` line is FILE's lines (pymdownx.snippets,
    from the repository root)."""
    lines = []
    for line in (DOCS / name).read_text().splitlines():
        snippet = re.fullmatch(r'--8<-- "([^"]+)"', line.strip())
        lines += (ROOT / snippet[1]).read_text().splitlines() if snippet else [line]
    return lines


@pytest.mark.timeout(600)
def test_the_site_builds_strictly_with_its_api_reference(tmp_path):
    pytest.importorskip('mkdocstrings', reason='pip install -e ".[docs]"')
    result = subprocess.run(
        [sys.executable, '-m', 'mkdocs', 'build', '--strict', '-d', str(tmp_path / 'site')],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
        env={'NO_MKDOCS_2_WARNING': '1', 'PATH': '/usr/bin:/bin'},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / 'site' / 'api' / 'compiler' / 'index.html').read_text()
    assert 'CompiledStage' in api and 'Executes a' in api  # rendered from the docstrings
    assert (tmp_path / 'site' / 'results' / 'memory' / 'memory.png').is_file()  # the studies' figures


@pytest.fixture(scope='module')
def zoo_table() -> str:
    """`optnets models --format markdown`, made once (each model's GMACs are counted by running it)."""
    from optnets.cli import models_table
    import timm
    from optnets.models import FAMILIES

    return models_table(timm.list_models(module=list(FAMILIES)))


@pytest.mark.parametrize('text', ['README.md', 'docs/zoo.md'])
def test_the_zoo_table_is_the_registrys(text, zoo_table):
    body = (ROOT / text).read_text()
    table = body.split('<!-- zoo: optnets models --format markdown -->\n', 1)[1].split('\n<!-- /zoo -->', 1)[0]
    assert table == zoo_table


STUDIES = {  # docs page -> the results whose table.md it holds
    'benchmarks/lpom-fmnist.md': ['lpom_fmnist', 'lpom_solver_speed'],
    'benchmarks/lpom-cnn.md': [
        'lpom_cnn_55k_10ep_bn_mu10',
        'lpom_cnn_55k_3ep_capped',
        'lpom_cnn_55k_10ep_capped_mu10',
        'lpom_cnn_55k_10ep_capped_chosen_at_3ep',
        'lpom_cnn_55k_10ep_capped_chosen_at_10ep',
        'lpom_cnn_55k_20ep_capped_seed0',
        'lpom_cnn_55k_10ep_sgd_adam_bn',
    ],
    'benchmarks/vs-timm.md': ['vs_timm', 'vs_timm/repeat', 'vs_timm/compile'],
    'reversible.md': ['memory'],
    'benchmarks/mutations.md': ['mutations'],
    'benchmarks/rule-search.md': ['rule_search'],
    'benchmarks/recon-cs.md': ['recon_cs', 'recon_cs_table'],
    'benchmarks/recon-inpainting.md': ['recon_inpainting'],
}


@pytest.mark.parametrize('name, results', list(STUDIES.items()))
def test_each_studys_tables_are_the_ones_its_benchmark_wrote(name, results):
    """Row for row: no number in a study's table is typed by hand."""
    lines = page(name)
    for result in results:
        table = (ROOT / 'benchmarks' / 'results' / result / 'table.md').read_text().strip().splitlines()
        assert all(row in lines for row in table), f'{name} lacks rows of {result}/table.md'


def test_the_fuzz_page_states_what_the_fuzz_run_wrote():
    result = json.loads((ROOT / 'benchmarks' / 'results' / 'rule_fuzz.json').read_text())
    text = (DOCS / 'benchmarks' / 'rule-fuzz.md').read_text().replace('\n', ' ')
    assert f'{result["examples"]:,} rules, {result["mismatches"]} mismatches' in text
    assert f'{result["refused"]} refused' in text and f'{result["overflowed"]:,} with extreme' in text


def test_the_layout_names_every_module_and_only_existing_ones():
    block = (DOCS / 'design.md').read_text().split('```text\n', 1)[1].split('```', 1)[0]
    modules = [
        p
        for folder in ('optnets', 'recipes')
        for p in (ROOT / folder).rglob('*.py')
        if p.name not in ('__init__.py', '__main__.py')
    ] + [ROOT / 'hubconf.py']
    for path in modules:
        assert re.search(rf'\b{re.escape(path.stem)}\b', block), f'{path.relative_to(ROOT)} is not in the layout'
    for name in re.findall(r'\b(\w+)\.py\b', block):
        assert any(p.stem == name for p in modules), f'the layout names {name}.py, which does not exist'


def test_user_docs_hold_no_commit_hashes_or_dates():
    for path in [ROOT / 'README.md', *DOCS.glob('*.md'), *DOCS.glob('benchmarks/*.md')]:
        text = path.read_text()
        assert not re.search(r'\bcommit [0-9a-f]{7}|\b20\d\d-\d\d-\d\d\b', text), path.name


def test_the_readme_is_read_in_five_minutes_and_links_only_inside_the_repository():
    text = (ROOT / 'README.md').read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r'\]\(([^)]+)\)', text):
        assert not target.startswith(('http', '../')), target
        assert (ROOT / target.split('#')[0]).exists(), target


def test_every_number_in_the_readmes_results_is_on_the_study_page_it_links():
    """The README's headline results are quoted from the study pages as the site shows them (their tables, included
    from the results, among them)."""
    section = (ROOT / 'README.md').read_text().split('## Results', 1)[1].split('\n## ', 1)[0]
    rows = re.findall(r'^\| \[[^\]]+\]\(([^)]+)\) \| (.+) \|$', section, re.M)
    assert len(rows) >= 6
    for link, cell in rows:
        shown = '\n'.join(page(link.removeprefix('docs/').split('#')[0]))
        assert [n for n in re.findall(r'\d+\.\d+', cell) if n not in shown] == [], link
