"""Lightning recipes: a LightningModule for any timm model, DataModules, and the LightningCLI entry point."""
