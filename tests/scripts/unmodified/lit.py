"""A Lightning script with a WandbLogger and ModelCheckpoint, resumed with ckpt_path="last".
It knows nothing of resumeguard."""

import os
import sys

import lightning.pytorch as pl
import torch

HIDDEN = int(os.environ.get("HIDDEN", "8"))


class Tiny(pl.LightningModule):
    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(8, 4, generator=g), torch.randn(8, 1))
        return torch.utils.data.DataLoader(data, batch_size=4)


if __name__ == "__main__":
    epochs = int(sys.argv[1])
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.WandbLogger(project="lit", id="lit1", resume="allow"),
        callbacks=[pl.callbacks.ModelCheckpoint(save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), ckpt_path="last" if len(sys.argv) > 2 else None)
    print(f"trained to epoch {trainer.current_epoch}", flush=True)
