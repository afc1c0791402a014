"""The reconstruction recipe: an unrolled network (``optnets.recon``) trained on compressed sensing of images, with
deepinv's physics, PSNR and SSIM from torchmetrics, and the progress bar and checkpoints of the other recipes."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from deepinv.physics import CompressedSensing
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from optnets.recon import presets
from optnets.recon.network import lipschitz
from optnets.recon.prox import symmetry_loss


class ReconModule(L.LightningModule):
    """``model`` (a key of ``optnets.recon.PRESETS``) with ``phases`` phases reconstructs images from compressed
    measurements ``y = A x``, ``A`` a Gaussian matrix of ``round(sampling_ratio * pixels)`` rows drawn from
    ``physics_seed`` (kept in the state, so a checkpoint carries its physics). Loss: mean squared error plus
    ``symmetry_weight`` times ISTA-Net's symmetry term, minimised by Adam at ``lr``; with ``step_lr='lipschitz'``
    the network's step sizes (``ReconNet.step_sizes``, in units of ``1/L``) at ``L`` times ``lr``, which learns the
    raw step at ``lr`` as deepinv's unfolded networks do (``'common'``: every parameter at ``lr``). ``in_chans`` and
    ``num_classes`` come from the data module (the classes are not used)."""

    def __init__(
        self,
        model: str = 'ista_net_plus',
        phases: int | None = None,
        sampling_ratio: float = 0.25,
        image_size: int = 28,
        in_chans: int = 1,
        num_classes: int | None = None,
        physics_seed: int = 0,
        features: int = 32,
        symmetry_weight: float = 0.01,
        lr: float = 1e-3,
        model_kwargs: dict | None = None,
        step_lr: str = 'lipschitz',
    ):
        super().__init__()
        if model not in presets.PRESETS:
            raise ValueError(f'model must be one of {sorted(presets.PRESETS)}, got {model!r}')
        if not 0 < sampling_ratio <= 1:
            raise ValueError(f'sampling_ratio is a fraction of the pixels, in (0, 1], got {sampling_ratio}')
        if step_lr not in ('lipschitz', 'common'):
            raise ValueError(f"step_lr must be 'lipschitz' or 'common', got {step_lr!r}")
        self.save_hyperparameters()
        pixels = in_chans * image_size**2
        self.physics = CompressedSensing(
            m=max(1, round(sampling_ratio * pixels)),
            img_size=(in_chans, image_size, image_size),
            rng=torch.Generator().manual_seed(physics_seed),
        )
        self.model = presets.build(model, phases, in_chans, features, **(model_kwargs or {}))
        splits = ('val', 'test')  # modules, so that the metrics follow the module's device
        self.psnr = nn.ModuleDict({split: PeakSignalNoiseRatio(data_range=1.0) for split in splits})
        self.ssim = nn.ModuleDict({split: StructuralSimilarityIndexMeasure(data_range=1.0) for split in splits})

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.model(y, self.physics)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, _ = batch
        mse = F.mse_loss(self(self.physics(x)), x)
        loss = mse + self.hparams.symmetry_weight * symmetry_loss(self.model)
        self.log('train/loss', loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log('train/mse', mse, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        x, _ = batch
        out = self(self.physics(x)).clamp(0, 1)
        self.psnr[split](out, x)
        self.ssim[split](out, x)
        self.log(f'{split}/psnr', self.psnr[split], prog_bar=True)
        self.log(f'{split}/ssim', self.ssim[split])
        self.log(f'{split}/mse', F.mse_loss(out, x))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, 'val')

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, 'test')

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.step_lr == 'common':
            return torch.optim.Adam(self.model.parameters(), lr=hp.lr)
        like = torch.zeros(1, hp.in_chans, hp.image_size, hp.image_size)
        return torch.optim.Adam(self.model.raw_step_groups(hp.lr, lipschitz(self.physics, like)), lr=hp.lr)
