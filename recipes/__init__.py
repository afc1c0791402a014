"""Lightning recipes: a LightningModule for any timm model, DataModules, and the LightningCLI entry point."""

from optnets.extras import require

require('recipes')
