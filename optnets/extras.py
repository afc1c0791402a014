"""The optional parts of optnets and what each needs: ``pip install "optnets[NAME]"``.

The core (the compiler, the zoo, the weights) needs torch, timm, safetensors and huggingface_hub. A part that
needs more checks for it on import and says, in one line, which extra installs it."""

from importlib.util import find_spec

EXTRAS = {
    'recipes': ('lightning', 'torchmetrics', 'torchdata', 'jsonargparse', 'tensorboard', 'sklearn'),
    'lpom': ('sklearn', 'numpy', 'tqdm'),
    'search': ('optuna',),
    'recon': ('deepinv',),
}
"""Extra -> the modules it brings (import names); setup.cfg's extras_require lists their distributions."""


class MissingExtra(ImportError):
    """A part of optnets whose extra is not installed."""


def require(extra: str) -> None:
    """Raise ``MissingExtra`` naming ``extra`` when any of its modules is missing."""
    missing = [module for module in EXTRAS[extra] if find_spec(module) is None]
    if missing:
        raise MissingExtra(
            f'this needs the optnets[{extra}] extra (missing {", ".join(missing)}): pip install "optnets[{extra}]"'
        )
