"""PyTorch Lightning for pbtune: train one trial of a ``LightningModule``.

`fit` warm-starts a trial from its parent's Lightning checkpoint, then sets and checks the
trial's params (the restored optimizer state would otherwise bring the donor's lr back),
trains to ``trial.end_step`` in optimizer steps or epochs, and writes the trial's
checkpoint. Works with ``lightning`` (``import lightning as L``) and with the standalone
``pytorch_lightning`` package. Needs ``pip install 'pbtune[lightning]'``.

Example::

    import pbtune
    import pbtune.lightning

    def train(trial: pbtune.Trial) -> dict[str, float]:
        model = LitRegression(lr=trial.params["lr"])
        return pbtune.lightning.fit(trial, model, datamodule=RegressionData())
"""

from pbtune._errors import MissingExtraError
from pbtune.lightning._package import INSTALL, installed

if not installed():
    raise MissingExtraError(
        "pbtune.lightning needs PyTorch Lightning (the lightning or pytorch_lightning "
        f"package): {INSTALL}"
    )

from pbtune.lightning._checkpoint import CHECKPOINT_FILE, checkpoint_file
from pbtune.lightning._fit import QUIET_DEFAULTS, fit

__all__ = ["CHECKPOINT_FILE", "QUIET_DEFAULTS", "checkpoint_file", "fit"]
