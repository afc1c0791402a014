"""The `optnets` command: the model table and info measure what they state; bad input is one line, exit 2."""

import subprocess
import sys

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import optnets
from optnets.cli import main


def test_models_table_counts_what_a_real_forward_counts(capsys):
    main(['models', 'hb_net_20*'])
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:3] == ['model', 'params', '(M)']
    model = timm.create_model('hb_net_20_cifar')  # its default tag's input: Fashion-MNIST's one channel
    with FlopCounterMode(display=False) as counter:  # on real tensors, where the table builds on the meta device
        model(torch.randn(1, *model.pretrained_cfg['input_size']))
    name, params, gmacs, size, coefficients, *tags = row.split()
    assert name == 'hb_net_20_cifar' and size == '1x32x32'
    assert float(params) == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6, abs=5e-4)
    assert float(gmacs) == pytest.approx(counter.get_total_flops() / 2e9, abs=5e-4)
    assert int(coefficients) == 3 * 2 * 2  # b1, b2 per step, 2 steps after each of 3 transitions
    assert ' '.join(tags) == 'fmnist, fmnist_resnet'


def test_info_prints_the_plan_stages_and_tags(capsys):
    main(['info', 'admm_net_56_cifar'])
    out = capsys.readouterr().out
    assert out.startswith('admm_net_56_cifar: ')
    assert 'stages: 4 steps of width 16, 4 steps of width 32, 4 steps of width 64' in out  # 2 streams: 8 T each
    assert 'Plan for rule admm: 2 stream(s) y, x' in out and 'pretrained tags: none' in out
    assert 'first stage: ' in out and 'program, 4 step(s):' in out and 'tensors kept: 3' in out


@pytest.mark.parametrize(
    'args, message',
    [
        (['models', 'resnet*'], "no optnets model matches 'resnet*'"),
        (['info', 'resnet18'], "'resnet18' is not an optnets model"),
        (['info', 'hb_net_20_cifar.nope'], "'hb_net_20_cifar.nope' is not an optnets model"),
        (['weights', 'verify', 'nope*'], "no published weights match 'nope*'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_python_m_optnets_and_version():
    result = subprocess.run([sys.executable, '-m', 'optnets', '--version'], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f'optnets {optnets.__version__}'


def test_family_of_reads_timms_registry():
    from optnets.models import family_of

    assert [family_of(n) for n in ('hb_net_20_cifar', 'agd_net_121.tv_in1k', 'momentum_net_56_cifar')] == [
        'hb_net',
        'agd_net',
        'momentum_net',
    ]
    with pytest.raises(LookupError):
        family_of('resnet18')


@pytest.mark.parametrize('command', [[], ['plan'], ['models'], ['info'], ['weights'], ['export'], ['search']])
def test_help_is_plain_text_without_rest_markup(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, '--help'])
    text = capsys.readouterr().out
    assert text.startswith('usage: optnets') and '``' not in text
