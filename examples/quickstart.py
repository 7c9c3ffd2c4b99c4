import numpy as np

import pbtune


def train(trial):  # SGD on a noisy quadratic: a large lr helps early, a small one late
    rng = np.random.default_rng([trial.seed, trial.start_step])  # a replay sees the same noise
    w = np.load(trial.parent_checkpoint / "w.npy") if trial.parent_checkpoint else np.full(10, 5.0)
    for _ in range(trial.start_step, trial.end_step):
        w -= trial.params["lr"] * (w + rng.normal(0.0, 1.0, w.shape))
    np.save(trial.checkpoint_dir / "w.npy", w)  # a child trial warm-starts from this
    return {"loss": float(w @ w)}


if __name__ == "__main__":
    study = pbtune.create_study(
        name="quickstart", storage="sqlite:///quickstart.db", metric="loss", mode="min",
        space={"lr": pbtune.Float(1e-3, 0.5, log=True)},
        population_size=4, steps_per_trial=10, max_steps=200, load_if_exists=True)
    study.optimize(train, workers=2)
    print(study.best_params, study.best_value)
