"""timm's own scripts on optnets models: ``optnets timm SCRIPT [ARGS...]`` (or ``python -m optnets.timm_scripts
SCRIPT [ARGS...]``) runs SCRIPT (timm's ``train.py``, ``validate.py``, ``benchmark.py``, ...) exactly as
``python SCRIPT ARGS...`` would, with optnets' families registered in timm first.

timm finds a model by name in its registry, which ``import optnets`` fills; timm's scripts never import optnets,
so run plainly they answer ``Unknown model``. The scripts ship in timm's repository, not in its wheel::

    git clone https://github.com/huggingface/pytorch-image-models timm-scripts
    optnets timm timm-scripts/validate.py FOLDER --model hb_net_20_cifar.fmnist --pretrained --in-chans 1
"""

import runpy
import sys
from pathlib import Path


def run(script: str, args: list[str]) -> None:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *args]`` and its folder first on ``sys.path``
    (what ``python script`` does), after registering optnets' models."""
    path = Path(script)
    if not path.is_file():
        raise FileNotFoundError(
            f"{script}: no such script (timm's train.py, validate.py and benchmark.py are in its repository, "
            'github.com/huggingface/pytorch-image-models, not in its wheel)'
        )
    import optnets  # noqa: F401  (registers the families with timm)

    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.resolve().parent))
    runpy.run_path(str(path), run_name='__main__')


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit('usage: python -m optnets.timm_scripts SCRIPT [ARGS...]')
    run(sys.argv[1], sys.argv[2:])
