"""The ``rl`` task of the quality benchmark: a small PPO agent, in NumPy, on Pendulum-v1.

Reinforcement learning is where PBT (Jaderberg et al. 2017) and PB2 (Parker-Holder et al.
2020) were shown; this is a small, CPU-cheap instance of it. The environment is gymnasium's
classic-control ``Pendulum-v1`` (swing a pendulum up and hold it; a continuous torque in
[-2, 2]; reward -(angle^2 + 0.1 angular velocity^2 + 0.001 torque^2) per step; every episode
lasts 200 steps, so the return goes from about -1,600 (no control) to about -150 (a good
policy)). The return is continuous and has no ceiling that every decent agent hits, unlike
CartPole's 500, which PPO reaches in a few thousand steps at almost any sensible learning
rate (so every method would tie there).

The agent is PPO (Schulman et al. 2017) with the clipped objective (0.2) and GAE (lambda
0.95): a Gaussian policy whose mean is a 3-64-1 tanh MLP and whose log standard deviation is
one learned number (clamped to [-5, 1]), a separate 3-64-1 tanh value net (loss weight 0.5),
Adam (0.9, 0.999, eps 1e-5) on both, gradients clipped to a global norm of 0.5, advantages
normalised per minibatch, rewards scaled by 0.1, the angular velocity by 1/8.

One pbtune step is one PPO iteration: one whole episode (200 steps) in each of 4 environments
(800 transitions), then 5 epochs of minibatch updates over them. Params: the learning rate
(log), the discount and the minibatch size (an ordered Choice: 800 transitions in minibatches
of 32 to 256, i.e. 25 to 4 updates per epoch). Fitness (``return``) is the mean return of 8
evaluation episodes with the policy's mean action, from initial states that depend on the
study seed only, so every member of a study is judged on the same episodes.

The checkpoint (an .npz, no pickle) holds the weights, both Adam moments, Adam's step count and
the training step: everything the agent needs to continue. Nothing random is carried: an
iteration starts its episodes from a reset, and its initial states and exploration noise come
from a generator seeded by (study seed, member, trial number, step), so a trial is
deterministic given its checkpoint, and a segment trained again (a retry after a copy) draws
fresh episodes. Every member starts from the same weights (from the study seed only).
gymnasium is imported inside the training function; only this task needs it.

Does a schedule matter here? ``python benchmarks/schedules.py rl`` (5 seeds; the return after
60 iterations, and the peak, the best return after any segment, what the quality benchmark's
best-at-budget sees; the discount and the minibatch at 0.97 and 64 unless said):

    params                           final: median    mean   worst     peak: median    mean
    lr 1e-3                                 -1114    -1135   -1241            -1114   -1115
    lr 3e-3                                  -594     -562    -805             -594    -542
    lr 1e-2                                  -236     -326    -702             -211    -304
    lr 3e-2                                  -388     -456   -1049             -218    -233
    lr 1e-1                                 -1353    -1350   -1552            -1099   -1006
    lr 3e-2 -> 1e-3 (exponential)            -279     -320    -553             -234    -303
    lr 3e-2 -> 0 (linear)                    -242     -266    -379             -213    -220
    lr 1e-1 -> 1e-3 (exponential)           -1045    -1057   -1322            -1029   -1038
    lr 1e-2, gamma 0.9                       -269     -280    -442             -215    -234
    lr 1e-2, gamma 0.95                      -200     -223    -331             -200    -197
    lr 1e-2, gamma 0.99                      -398     -470    -865             -226    -381
    lr 1e-2, gamma 0.9 -> 0.99               -215     -219    -258             -215    -219
    lr 1e-2, minibatch 32                    -301     -322    -488             -245    -268
    lr 1e-2, minibatch 256                   -630     -582    -786             -616    -567

Every param matters as a fixed setting (lr 1e-3 or 1e-1, a discount of 0.99 or minibatches of
256 cost hundreds). A schedule matters much less: a decaying learning rate does not beat the
best fixed one in the median, neither at the end (-242 against -236) nor at the peak (-213
against -211), and a rising discount does not beat the best fixed one (-215 against -200).
What the decay does is keep the end of training from collapsing: the best fixed rates (1e-2,
3e-2) lose a good policy late on some seeds (worst final -702 and -1049), the linear decay
does not (worst -379, mean -266 against -326). So on this task a schedule buys the
reliability of the final model, not a better peak; the methods differ mostly in how fast
they leave the bad settings. (With 120 iterations instead of 60, a variant of the same
measurement over 4 seeds showed the same: no decay beat lr 1e-2 or 5e-3 held fixed.)
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

import pbtune

ENV_ID = "Pendulum-v1"
NUM_ENVS = 4
EPISODE = 200  # Pendulum-v1's time limit: one iteration is one episode per environment
EPOCHS = 5
CLIP = 0.2
GAE_LAMBDA = 0.95
VALUE_WEIGHT = 0.5
MAX_GRAD_NORM = 0.5
REWARD_SCALE = 0.1
OBS_SCALE = np.array([1.0, 1.0, 8.0])  # cos, sin, angular velocity (|v| <= 8)
MAX_TORQUE = 2.0
LOG_STD_RANGE = (-5.0, 1.0)
HIDDEN = 64
EVAL_EPISODES = 8
# The lowest return an episode can have (the largest cost at every step): a diverged agent's.
WORST_RETURN = -EPISODE * (np.pi**2 + 0.1 * 8.0**2 + 0.001 * MAX_TORQUE**2)
CHECKPOINT_FILE = "agent.npz"
SPACE: dict[str, pbtune.Float | pbtune.Choice] = {
    "lr": pbtune.Float(1e-4, 1e-1, log=True),
    "gamma": pbtune.Float(0.8, 0.99),
    "minibatch": pbtune.Choice([32, 64, 128, 256], ordered=True),
}
_ADAM = (0.9, 0.999, 1e-5)

Params = dict[str, np.ndarray]


# -- the nets -----------------------------------------------------------------------------------
def init_weights(seed: int) -> Params:
    """The initial policy and value nets, from the study seed only."""
    rng = np.random.default_rng([zlib.crc32(b"ppo-pendulum"), seed])

    def dense(n_in: int, n_out: int, gain: float) -> tuple[np.ndarray, np.ndarray]:
        return rng.normal(0.0, gain / np.sqrt(n_in), size=(n_in, n_out)), np.zeros(n_out)

    w: Params = {}
    w["pw1"], w["pb1"] = dense(3, HIDDEN, 1.0)
    w["pw2"], w["pb2"] = dense(HIDDEN, 1, 0.01)  # a near-zero mean action at first
    w["vw1"], w["vb1"] = dense(3, HIDDEN, 1.0)
    w["vw2"], w["vb2"] = dense(HIDDEN, 1, 1.0)
    w["log_std"] = np.zeros(1)
    return w


def policy(w: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hidden layer, mean action) for observations ``x`` (already scaled)."""
    h = np.tanh(x @ w["pw1"] + w["pb1"])
    return h, (h @ w["pw2"] + w["pb2"])[:, 0]


def value(w: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.tanh(x @ w["vw1"] + w["vb1"])
    return h, (h @ w["vw2"] + w["vb2"])[:, 0]


def log_prob(mean: np.ndarray, log_std: float, action: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian log-density of ``action`` and the standardised action (a - mean) / std."""
    z = (action - mean) / np.exp(log_std)
    return -0.5 * z * z - log_std - 0.5 * np.log(2.0 * np.pi), z


def gradients(w: Params, batch: dict[str, np.ndarray]) -> Params:
    """Gradient of PPO's loss (clipped surrogate + value loss) on one minibatch."""
    x, n = batch["obs"], len(batch["action"])
    h, mean = policy(w, x)
    log_std = float(w["log_std"][0])
    logp, z = log_prob(mean, log_std, batch["action"])
    ratio = np.exp(logp - batch["logp"])
    adv = batch["adv"]
    # d/dlogp of -min(ratio A, clip(ratio) A): -ratio A where the unclipped term is the min.
    active = ratio * adv <= np.clip(ratio, 1.0 - CLIP, 1.0 + CLIP) * adv
    dlogp = -np.where(active, ratio * adv, 0.0) / n
    g: Params = {"log_std": np.array([np.sum(dlogp * (z * z - 1.0))])}
    dmean = (dlogp * z / np.exp(log_std))[:, None]
    g["pw2"], g["pb2"] = h.T @ dmean, dmean.sum(axis=0)
    dh = (dmean @ w["pw2"].T) * (1.0 - h * h)
    g["pw1"], g["pb1"] = x.T @ dh, dh.sum(axis=0)
    hv, v = value(w, x)
    dv = (2.0 * VALUE_WEIGHT * (v - batch["ret"]) / n)[:, None]
    g["vw2"], g["vb2"] = hv.T @ dv, dv.sum(axis=0)
    dhv = (dv @ w["vw2"].T) * (1.0 - hv * hv)
    g["vw1"], g["vb1"] = x.T @ dhv, dhv.sum(axis=0)
    return g


def adam_step(state: dict[str, Any], g: Params, lr: float) -> None:
    """One Adam update of ``state["w"]`` (moments in ``state["m"]``, ``state["v"]``),
    after clipping the gradient to a global norm of MAX_GRAD_NORM."""
    b1, b2, eps = _ADAM
    norm = float(np.sqrt(sum(float(np.sum(x * x)) for x in g.values())))
    scale = min(1.0, MAX_GRAD_NORM / (norm + 1e-12))
    state["t"] += 1
    t = state["t"]
    for name, weights in state["w"].items():
        grad = g[name] * scale
        m = state["m"][name] = b1 * state["m"][name] + (1.0 - b1) * grad
        v = state["v"][name] = b2 * state["v"][name] + (1.0 - b2) * grad * grad
        weights -= lr * (m / (1.0 - b1**t)) / (np.sqrt(v / (1.0 - b2**t)) + eps)
    state["w"]["log_std"] = np.clip(state["w"]["log_std"], *LOG_STD_RANGE)


# -- rollouts -----------------------------------------------------------------------------------
def make_env(num_envs: int) -> Any:
    import gymnasium as gym

    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="sync")


def rollout(env: Any, w: Params, gamma: float, rng: np.random.Generator
            ) -> dict[str, np.ndarray]:
    """One episode in every environment with the stochastic policy; returns the flattened
    transitions with GAE advantages and value targets."""
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    log_std = float(w["log_std"][0])
    xs, actions, logps, rewards = [], [], [], []
    for _ in range(EPISODE):
        x = obs / OBS_SCALE
        _, mean = policy(w, x)
        action = mean + np.exp(log_std) * rng.normal(size=len(mean))
        obs, reward, terminated, truncated, _ = env.step(
            np.clip(action, -MAX_TORQUE, MAX_TORQUE)[:, None])
        xs.append(x)
        actions.append(action)
        logps.append(log_prob(mean, log_std, action)[0])
        rewards.append(REWARD_SCALE * reward)
    assert truncated.all() and not terminated.any()  # Pendulum only ends at its time limit
    x = np.array(xs)  # (EPISODE, envs, 3)
    v = value(w, x.reshape(-1, 3))[1].reshape(EPISODE, -1)
    v_next = np.vstack([v[1:], value(w, obs / OBS_SCALE)[1][None]])  # bootstrap at the limit
    delta = np.array(rewards) + gamma * v_next - v
    adv = np.zeros_like(delta)
    running = np.zeros(delta.shape[1])
    for t in reversed(range(EPISODE)):
        running = delta[t] + gamma * GAE_LAMBDA * running
        adv[t] = running
    return {"obs": x.reshape(-1, 3), "action": np.array(actions).ravel(),
            "logp": np.array(logps).ravel(), "adv": adv.ravel(), "ret": (adv + v).ravel()}


def update(state: dict[str, Any], data: dict[str, np.ndarray], lr: float, minibatch: int,
           rng: np.random.Generator) -> None:
    n = len(data["action"])
    for _ in range(EPOCHS):
        order = rng.permutation(n)
        for start in range(0, n, minibatch):
            batch = {k: v[order[start:start + minibatch]] for k, v in data.items()}
            adv = batch["adv"]
            batch["adv"] = (adv - adv.mean()) / (adv.std() + 1e-8)
            adam_step(state, gradients(state["w"], batch), lr)


def evaluate(w: Params, seed: int) -> float:
    """Mean return of EVAL_EPISODES episodes with the mean action, from initial states drawn
    from the study seed only."""
    env = make_env(EVAL_EPISODES)
    obs, _ = env.reset(seed=zlib.crc32(f"ppo-eval-{seed}".encode()))
    total = np.zeros(EVAL_EPISODES)
    for _ in range(EPISODE):
        _, mean = policy(w, obs / OBS_SCALE)
        obs, reward, _, _, _ = env.step(np.clip(mean, -MAX_TORQUE, MAX_TORQUE)[:, None])
        total += reward
    env.close()
    return float(total.mean())


# -- the training function ----------------------------------------------------------------------
def load(trial: pbtune.Trial) -> dict[str, Any]:
    if trial.parent_checkpoint is None:
        w = init_weights(trial.seed)
        return {"w": w, "m": {k: np.zeros_like(x) for k, x in w.items()},
                "v": {k: np.zeros_like(x) for k, x in w.items()}, "t": 0}
    with np.load(Path(trial.parent_checkpoint) / CHECKPOINT_FILE, allow_pickle=False) as saved:
        arrays = {name: saved[name].copy() for name in saved.files}
    if int(arrays["step"]) != trial.start_step:
        raise RuntimeError(
            f"checkpoint is at step {int(arrays['step'])}, trial starts at {trial.start_step}"
        )
    state: dict[str, Any] = {"w": {}, "m": {}, "v": {}, "t": int(arrays["adam_t"])}
    for key, array in arrays.items():
        part, _, name = key.partition(":")
        if part in ("w", "m", "v"):
            state[part][name] = array
    return state


def save(state: dict[str, Any], step: int, directory: Path) -> None:
    arrays = {f"{part}:{name}": a for part in ("w", "m", "v") for name, a in state[part].items()}
    np.savez(directory / CHECKPOINT_FILE, step=np.array(step, dtype=np.int64),
             adam_t=np.array(state["t"], dtype=np.int64), **arrays)


def train(trial: pbtune.Trial) -> dict[str, float]:
    """PPO iterations from ``trial.start_step`` to ``trial.end_step``, then an evaluation."""
    state = load(trial)
    lr = float(trial.params["lr"])
    gamma = float(trial.params["gamma"])
    minibatch = int(trial.params["minibatch"])
    env = make_env(NUM_ENVS)
    with np.errstate(over="ignore", invalid="ignore"):  # a too-large lr may blow up: a result
        for step in range(trial.start_step, trial.end_step):
            rng = np.random.default_rng([trial.seed, trial.member, trial.number, step])
            update(state, rollout(env, state["w"], gamma, rng), lr, minibatch, rng)
        env.close()
        save(state, trial.end_step, Path(trial.checkpoint_dir))
        score = evaluate(state["w"], trial.seed)
    return {"return": score if np.isfinite(score) else WORST_RETURN}
