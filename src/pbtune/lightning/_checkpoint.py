"""Where a trial's Lightning checkpoint lies in its checkpoint directory."""

from __future__ import annotations

from pathlib import Path

from pbtune._errors import CheckpointError

CHECKPOINT_FILE = "model.ckpt"
"""The name `pbtune.lightning.fit` gives the checkpoint it writes into ``trial.checkpoint_dir``."""


def checkpoint_file(directory: Path | str) -> Path:
    """The Lightning checkpoint (``.ckpt``) in a trial's checkpoint directory.

    ``model.ckpt`` (what `pbtune.lightning.fit` writes) if it is there, else the one
    ``.ckpt`` file in the directory, for a parent trained by code of your own that saved
    with ``trainer.save_checkpoint``. Raises `pbtune.CheckpointError` when there is
    none, or several and no ``model.ckpt``.

    Example (the best model of a study)::

        path = pbtune.lightning.checkpoint_file(study.best_trial.checkpoint)
        model = LitModel.load_from_checkpoint(path)
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"the checkpoint directory {str(directory)!r} does not exist")
    ours = directory / CHECKPOINT_FILE
    if ours.is_file():
        return ours
    found = sorted(path for path in directory.glob("*.ckpt") if path.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointError(
            f"{str(directory)!r} holds no Lightning checkpoint (.ckpt file), so its trial "
            "cannot be continued. The training function that wrote it must save one into "
            "trial.checkpoint_dir: train with pbtune.lightning.fit (it writes "
            f"{CHECKPOINT_FILE}), or call trainer.save_checkpoint(trial.checkpoint_dir / "
            f"{CHECKPOINT_FILE!r}) at the end of your own training function."
        )
    names = ", ".join(path.name for path in found)
    raise CheckpointError(
        f"{str(directory)!r} holds several Lightning checkpoints ({names}) and no "
        f"{CHECKPOINT_FILE}, so pbtune cannot tell which one ends the trial. Save the "
        f"trial's final state as trial.checkpoint_dir / {CHECKPOINT_FILE!r}, and point "
        "other ModelCheckpoint callbacks outside trial.checkpoint_dir (their dirpath)."
    )
