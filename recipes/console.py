"""What the recipes print: the progress bar and the results, without the third-party advertising and deprecation
notices a user cannot act on. Each filter names the package and the message it drops; nothing else is silenced."""

import logging
import warnings

NOTICES = [  # (the module that warns, the message): deprecations inside third-party code
    ('torchdata', r"'set_vital' is deprecated"),  # torchdata's StatefulDataLoader calls a deprecated torch API
    ('lightning', r'`isinstance\(treespec, LeafSpec\)` is deprecated'),  # Lightning's pytree helper, on torch 2.14
]
ADVERTS = ('💡 Tip:',)
"""Lightning's log lines that advertise a product (the LitLogger tip, printed at every Trainer start)."""


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(ADVERTS)


def quiet(lightning_info: bool = True) -> None:
    """Drop the ``NOTICES`` and ``ADVERTS``; without ``lightning_info`` also Lightning's start-up info lines
    (devices, the loader it reads), as the main job does, whose output is the progress bar and the table."""
    for module, message in NOTICES:
        warnings.filterwarnings('ignore', message=message, module=module)
    for name in ('lightning.pytorch.utilities.rank_zero', 'lightning.fabric.utilities.rank_zero'):
        logging.getLogger(name).addFilter(_NoAdverts())
    if not lightning_info:
        logging.getLogger('lightning.pytorch').setLevel(logging.WARNING)
