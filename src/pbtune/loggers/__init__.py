"""Experiment trackers: each finished trial of a study logged to TensorBoard or MLflow, by
callbacks passed to `Study.optimize` (or `Study.join`), or named under ``loggers:`` in a
study file.

Importing this package imports neither library: each is imported when its logger is
made, and a missing one is a `ConfigError` that says what to install.

Example::

    from pbtune.loggers import MLflow, TensorBoard

    study.optimize(train, workers=4,
                   callbacks=[TensorBoard("runs"), MLflow("sqlite:///mlflow.db")])
"""

from pbtune.loggers._config import Logger, LoggerSpec, logger_specs, loggers_from_dict
from pbtune.loggers._mlflow import MLflow
from pbtune.loggers._tensorboard import TensorBoard

__all__ = ["Logger", "LoggerSpec", "MLflow", "TensorBoard", "logger_specs", "loggers_from_dict"]
