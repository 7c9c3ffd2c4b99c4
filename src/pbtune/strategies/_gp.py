"""A small time-varying Gaussian process, in NumPy, for PB2's bandit.

The kernel is Bogunovic et al.'s time-varying squared exponential (TV-GP-UCB, AISTATS
2016), as in PB2: ``k((t, z), (t', z')) = exp(-|z - z'|^2 / (2 l^2)) * (1 - eps)^(|t - t'| / 2)``,
where ``t`` counts segments and ``z`` is the point in the unit cube. Old data fades by
``1 - eps`` per two segments, so the model follows a population whose best params drift
while it trains. Targets are standardized, so the signal variance is 1.

The lengthscale ``l``, the forgetting rate ``eps`` and the noise are chosen by the largest
marginal likelihood over a fixed grid: deterministic, no optimizer to converge or not, and
a few milliseconds for the hundred or so points of a history window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

LENGTHSCALES = (0.15, 0.3, 0.6, 1.2)
EPSILONS = (0.01, 0.05, 0.2)
NOISES = (0.03, 0.3)
_JITTER = 1e-8


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2: np.ndarray = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    clipped: np.ndarray = np.maximum(d2, 0.0)
    return clipped


def _evidence(stack: np.ndarray, n: int) -> np.ndarray:
    """The log marginal likelihood (up to a constant) of each augmented matrix of ``stack``;
    -inf for one that is not numerically positive definite."""
    try:
        chol = np.linalg.cholesky(stack)
    except np.linalg.LinAlgError:
        return np.array([_evidence(m[None], n)[0] if _positive(m) else -np.inf for m in stack])
    logdet = np.log(np.diagonal(chol[:, :n, :n], axis1=1, axis2=2)).sum(axis=1)
    fit = np.einsum("gi,gi->g", chol[:, n, :n], chol[:, n, :n])
    return np.asarray(-0.5 * fit - logdet)


def _positive(m: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return False
    return True


class TimeVaryingGP:
    """GP regression of ``y`` on (``t``, ``z``), hyperparameters fitted on construction.

    ``t``: shape (n,), time in segments; ``z``: shape (n, d), points in [0, 1]^d;
    ``y``: shape (n,), standardized targets.
    """

    def __init__(self, t: np.ndarray, z: np.ndarray, y: np.ndarray) -> None:
        self.t, self.z, self.y = t, z, y
        n = len(y)
        d2 = _squared_distances(z, z)
        dt = np.abs(t[:, None] - t[None, :])
        grid = list(itertools.product(LENGTHSCALES, EPSILONS, NOISES))
        # Every grid point's evidence from one batched Cholesky: that of [[K, y], [y', c]]
        # is [[L, 0], [w', s]] with L w = y, so y' K^-1 y = |w|^2 and log|K| = 2 sum log
        # diag L. c is large enough (y' K^-1 y <= |y|^2 / noise) to keep it positive.
        stack = np.empty((len(grid), n + 1, n + 1))
        spatial = {length: np.exp(-d2 / (2 * length**2)) for length in LENGTHSCALES}
        fading = {eps: np.exp(0.5 * dt * math.log1p(-eps)) for eps in EPSILONS}
        for i, (length, eps, noise) in enumerate(grid):
            k = stack[i, :n, :n]
            np.multiply(spatial[length], fading[eps], out=k)
            k[np.diag_indices(n)] += noise + _JITTER
        stack[:, :n, n] = y
        stack[:, n, :n] = y
        stack[:, n, n] = float(y @ y) / min(NOISES) + 1.0
        evidence = _evidence(stack, n)
        self.length, self.eps, self.noise = grid[int(np.argmax(evidence))]
        k = self.kernel(t, z, t, z)
        k[np.diag_indices(n)] += self.noise + _JITTER
        self._alpha = np.linalg.solve(k, y)

    def kernel(self, t1: np.ndarray, z1: np.ndarray, t2: np.ndarray, z2: np.ndarray
               ) -> np.ndarray:
        d2 = _squared_distances(z1, z2)
        dt = np.abs(t1[:, None] - t2[None, :])
        k: np.ndarray = np.exp(-d2 / (2 * self.length**2) + 0.5 * dt * math.log1p(-self.eps))
        return k

    def mean(self, t: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The posterior mean at the points (t, z)."""
        return self.kernel(t, z, self.t, self.z) @ self._alpha

    def std_at(self, also_t: np.ndarray, also_z: np.ndarray
               ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The posterior standard deviation, as a function of points (t, z), given the data
        and the points (``also_t``, ``also_z``) as if they were observed too. The variance
        does not depend on the targets, so the points of trials still running lower it
        where they are, whatever they will score (Desautels et al., 2014, GP-BUCB)."""
        tt = np.concatenate([self.t, also_t])
        zz = np.concatenate([self.z, also_z])
        k = self.kernel(tt, zz, tt, zz)
        k[np.diag_indices_from(k)] += self.noise + _JITTER
        inverse = np.linalg.inv(k)

        def std(t: np.ndarray, z: np.ndarray) -> np.ndarray:
            cross = self.kernel(tt, zz, t, z)
            explained = np.einsum("ij,ij->j", cross, inverse @ cross)
            spread: np.ndarray = np.sqrt(np.maximum(1.0 - explained, 0.0))
            return spread

        return std

    def weights(self, t: np.ndarray, now: float) -> np.ndarray:
        """How much data at times ``t`` still counts at time ``now`` (the kernel's fading)."""
        return np.exp(0.5 * np.abs(now - t) * math.log1p(-self.eps))
