"""The LightningModule: trains any timm model by name (every optnets model and every timm baseline)."""

import math
from typing import Optional

import lightning as L
import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from torchmetrics.classification import MulticlassAccuracy

from optnets import rule_model  # importing optnets registers its families with timm


class ImageClassifier(L.LightningModule):
    """Image classification with a timm model.

    Args:
        model: a timm model name (``timm.list_models()``), e.g. ``hb_net_56_cifar`` or ``resnet34``.
        model_kwargs: extra ``timm.create_model`` arguments, e.g. ``{learn_coeffs: false}``.
        optimizer: a timm optimizer name (``sgd`` is SGD with Nesterov momentum, ``momentum`` without).
        schedule: ``step`` (divide by 10 at 50% and 75% of the epochs, as the papers) or ``cosine`` (per step).
        coeff_lr_scale: the rule's coefficients learn at ``lr * coeff_lr_scale`` (their own parameter group, still
            without weight decay); 1 keeps timm's two groups.
        label_smoothing, mixup, cutmix: regularisers (timm's ``Mixup`` when either alpha is positive).
        channels_last, compile: speed switches (memory format; ``torch.compile`` of the model in place).
        rule: builds ``model`` as this rule, ``{rule, preset, depth, inits, shortcut}`` (``optnets.register``'s
            arguments), with nothing registered in timm: how a search trial and ``optnets search export``'s configs
            name a found rule.
    """

    def __init__(
        self,
        model: str = 'hb_net_20_cifar',
        model_kwargs: Optional[dict] = None,
        num_classes: int = 10,
        in_chans: int = 3,
        optimizer: str = 'momentum',
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        schedule: str = 'step',
        warmup_epochs: int = 0,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        rule: Optional[dict] = None,
        coeff_lr_scale: float = 1.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if not rule and not timm.is_model(model):  # a tagged name (resnet18.a1_in1k) is its architecture's
            close = timm.list_models(f'*{model.split("_")[0]}*')[:8]
            raise ValueError(
                f'unknown model {model!r}: `optnets models` lists the optnets ones, '
                f'timm.list_models() all of them{f" (close: {close})" if close else ""}'
            )
        if not (
            0 <= lr < math.inf and 0 <= weight_decay < math.inf and 0 <= momentum < 1 and 0 <= coeff_lr_scale < math.inf
        ):
            raise ValueError(
                f'lr, weight_decay and coeff_lr_scale must be finite and non-negative and momentum in [0, 1), got '
                f'lr={lr}, weight_decay={weight_decay}, coeff_lr_scale={coeff_lr_scale}, momentum={momentum}'
            )
        if schedule not in ('step', 'cosine'):
            raise ValueError(f"schedule must be 'step' or 'cosine', got {schedule!r}")
        kwargs = dict(num_classes=num_classes, in_chans=in_chans, **(model_kwargs or {}))
        self.model = rule_model(model, **rule, **kwargs) if rule else timm.create_model(model, **kwargs)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.mixup = (
            Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing, num_classes=num_classes)
            if mixup or cutmix
            else None
        )
        self.top1 = MulticlassAccuracy(num_classes, top_k=1)
        self.top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes))

    def configure_model(self) -> None:
        if self.hparams.compile:
            self.model.compile()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixup is not None:
            x, soft = self.mixup(x, y)
            loss = SoftTargetCrossEntropy()(self(x), soft)
        else:
            loss = F.cross_entropy(self(x), y, label_smoothing=self.hparams.label_smoothing)
        self.log('train/loss', loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def _evaluate(self, batch, split: str):
        x, y = batch
        logits = self(x)
        self.top1(logits, y)
        self.top5(logits, y)
        self.log(f'{split}/loss', F.cross_entropy(logits, y), sync_dist=True)
        self.log(f'{split}/top1', self.top1, prog_bar=True)
        self.log(f'{split}/top5', self.top5)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, 'val')

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, 'test')

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class probabilities of a batch (``optnets train predict``: the data module's validation images)."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(-1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The run's preprocessing travels with its weights (``optnets export --hub-dir`` writes it as timm's)."""
        data = getattr(self.trainer, 'datamodule', None) if self._trainer is not None else None
        if hasattr(data, 'data_config'):
            checkpoint['data_config'] = data.data_config()

    def parameter_groups(self) -> torch.nn.Module | list[dict]:
        """timm's groups (no weight decay for biases, norms and ``no_weight_decay()``), and with
        ``coeff_lr_scale != 1`` the rule's coefficients split off into a third group at their own learning rate."""
        hp = self.hparams
        coefficients = [p for _, p in getattr(self.model, 'named_coefficients', tuple)()]
        if hp.coeff_lr_scale == 1 or not coefficients:
            return self.model
        scaled = {id(p) for p in coefficients}
        groups = param_groups_weight_decay(self.model, hp.weight_decay, self.model.no_weight_decay())
        groups = [{**g, 'params': [p for p in g['params'] if id(p) not in scaled]} for g in groups]
        return [g for g in groups if g['params']] + [
            {'params': coefficients, 'weight_decay': 0.0, 'lr': hp.lr * hp.coeff_lr_scale}
        ]

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = create_optimizer_v2(
            self.parameter_groups(), hp.optimizer, lr=hp.lr, weight_decay=hp.weight_decay, momentum=hp.momentum
        )
        steps = self.trainer.estimated_stepping_batches
        warmup = int(steps * hp.warmup_epochs / max(self.trainer.max_epochs or 1, 1))
        if hp.schedule == 'cosine':
            main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps - warmup, 1))
        else:
            drops = [max(int(steps * share) - warmup, 1) for share in (0.5, 0.75)]  # counted after the warmup
            main = torch.optim.lr_scheduler.MultiStepLR(optimizer, drops, 0.1)
        if warmup:
            ramp = torch.optim.lr_scheduler.LinearLR(optimizer, 0.01, 1.0, warmup)
            main = torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, main], [warmup])
        return {'optimizer': optimizer, 'lr_scheduler': {'scheduler': main, 'interval': 'step'}}
