"""LPOM in the recipe CLI: a LightningModule with manual optimisation whose step is one LPOM block-coordinate
update, so that Lightning brings the progress bar, logs, checkpoints and resuming. There is no optimizer: LPOM
updates the module's own parameters in place, and Lightning's placeholder optimizer counts the steps."""

from typing import Optional, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from optnets.lpom import LPOM, LPOMConv
from optnets.lpom.estimator import DEFAULT_MU


class LPOMClassifier(L.LightningModule):
    """An MLP ``in_chans * image_size**2 -> hidden... -> num_classes`` trained by LPOM (no backpropagation), or
    with ``architecture`` (e.g. ``[conv16x5, avg2, conv32x5, avg2]``) a convolutional network
    (``LPOMConv``, which ignores ``hidden``, ``update_schedule`` and ``parallel_weights``).

    The arguments are ``LPOM``'s (``hidden`` its ``hidden_layer_sizes``, ``seed`` its
    ``random_state``); ``update_schedule`` is its ``schedule`` (serial or parallel activation updates), renamed so
    that it never takes the learning-rate ``schedule`` of a config it replaces. Each epoch logs Theorem 2's rho of
    every hidden update (``rho/<i>``); with ``monitor``, each step does, with how many block updates raised the
    batch's objective.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (300,),
        architecture: Optional[Sequence[str]] = None,
        num_classes: int = 10,
        in_chans: int = 1,
        image_size: int = 28,
        activation: str = 'relu',
        out_activation: str = 'identity',
        mu: float = DEFAULT_MU,
        loss: str = 'cross_entropy',
        update_schedule: str = 'serial',
        parallel_weights: bool = False,
        activation_iters: int = 5,
        weight_iters: int = 3,
        pinv_reg: float = 1e-3,
        activation_kwargs: Optional[dict] = None,
        rho_max: Optional[float] = None,
        monitor: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        shared = dict(
            activation=activation,
            out_activation=out_activation,
            mu=mu,
            loss=loss,
            activation_iters=activation_iters,
            weight_iters=weight_iters,
            pinv_reg=pinv_reg,
            activation_kwargs=activation_kwargs,
            rho_max=rho_max,
            monitor=monitor,
            random_state=seed,
        )
        self.lpom = (
            LPOMConv(tuple(architecture), (in_chans, image_size, image_size), **shared)
            if architecture
            else LPOM(hidden, schedule=update_schedule, parallel_weights=parallel_weights, **shared)
        ).initialize(in_chans * image_size**2, range(num_classes))
        # one copy of the weights: the module's parameters (checkpoints hold them, resuming restores them in place),
        # which LPOM updates in place
        self.weights = nn.ParameterList(nn.Parameter(w, requires_grad=False) for w in self.lpom.weights_)
        self.lpom.weights_ = list(self.weights)
        # the batch normalizations' running statistics too, as buffers (LPOM updates them in place)
        for name, (layer, key) in self._statistics().items():
            self.register_buffer(name, layer.running[key])
        self.top1 = MulticlassAccuracy(num_classes)

    def _statistics(self) -> dict:
        """``{buffer name: (layer, key)}`` of every running statistic of the LPOM layers."""
        return {
            f'running_{key}_{i}': (layer, key)
            for i, layer in enumerate(getattr(self.lpom, 'layers_', ()))
            for key in getattr(layer, 'running', {})
        }

    def _apply(self, fn, *args, **kwargs):
        """After ``.to()`` and the like replaced the buffers, the layers read the new ones."""
        super()._apply(fn, *args, **kwargs)
        for name, (layer, key) in self._statistics().items():
            layer.running[key] = getattr(self, name)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lpom.forward(x.flatten(1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.lpom.partial_fit(x.flatten(1), y)
        self.optimizers().step()  # Lightning's placeholder optimizer: the step is counted (max_steps, checkpoints)
        self.log('train/loss', F.cross_entropy(self(x), y), prog_bar=True, on_step=True, on_epoch=True)
        if self.lpom.monitor:
            record = self.lpom.history_.pop()  # logged here, not kept
            self.log_dict({f'rho/{i}': rho for i, rho in enumerate(record['rho'], 1)}, on_step=True)
            self.log(
                'lpom/objective_increases',
                float(sum(after > before for _, before, after in record['objective'])),
                on_step=True,
            )

    def on_train_epoch_end(self) -> None:
        self.log_dict({f'rho/{i}': rho for i, rho in enumerate(self.lpom.rho(), 1)})

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.top1(logits, y)
        self.log('val/loss', F.cross_entropy(logits, y))
        self.log('val/top1', self.top1, prog_bar=True)

    def configure_optimizers(self) -> None:
        return None  # LPOM is the update; Lightning supplies a placeholder optimizer that only counts steps
