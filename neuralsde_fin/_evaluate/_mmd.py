"""Signature-kernel MMD^2 between two samples of paths, with a permutation-test p-value.

The Gram matrix of the pooled sample is computed once (pysiglib); each permutation then only
re-indexes it, so ``n_perm`` permutations cost a few matrix products, not kernel evaluations.
"""

from __future__ import annotations

import numpy as np

from neuralsde_fin._signature._kernel import sig_kernel_gram, static_kernel

#: Bandwidth of the RBF static kernel, exp(-|a - b|^2 / RBF_SIGMA), on rescaled paths.
RBF_SIGMA = 1.0


def _sig_gram(x: np.ndarray, y: np.ndarray, *, dyadic_order: int = 0,
              n_jobs: int | None = None) -> np.ndarray:
    """Signature-kernel Gram matrix ``K_ij = k(x_i, y_j)`` of time-augmented paths, with the
    RBF static kernel ``exp(-|a - b|^2 / RBF_SIGMA)`` (``_signature._kernel``; time on [0, 1]
    appended by pysiglib).

    Shape:
        x: ``(m, length, channels)``, y: ``(n, length, channels)``; output ``(m, n)``.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    gram = sig_kernel_gram(x, y, kernel=static_kernel("rbf", sigma=RBF_SIGMA),
                           dyadic_order=dyadic_order, time_aug=True, n_jobs=n_jobs)
    return np.asarray(gram, dtype=np.float64)


def _mmd2_from_gram(gram: np.ndarray, assign: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of ``assign`` (1 = first sample, 0 = second) from one Gram.

    .. math:: \\widehat{\\mathrm{MMD}}^2 = \\frac{\\sum_{i \\ne j} k(x_i, x_j)}{m(m-1)}
              - \\frac{2 \\sum_{i,j} k(x_i, y_j)}{mn} + \\frac{\\sum_{i \\ne j} k(y_i, y_j)}{n(n-1)}

    Shape:
        gram: ``(N, N)``; assign: ``(n_perm, N)``; output ``(n_perm,)``.
    """
    a = assign.astype(np.float64)
    b = 1.0 - a
    m = a.sum(1)
    n = b.sum(1)
    d = np.diag(gram)
    ka = a @ gram
    kb = b @ gram
    sxx = (ka * a).sum(1) - a @ d
    syy = (kb * b).sum(1) - b @ d
    sxy = (ka * b).sum(1)
    return sxx / (m * (m - 1)) - 2 * sxy / (m * n) + syy / (n * (n - 1))


def sig_mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_perm: int = 200,
    max_samples: int | None = 64,
    max_length: int | None = 33,
    scale: float | None = None,
    seed: int = 0,
    dyadic_order: int = 0,
    gram_cache: dict | None = None,
    n_jobs: int | None = None,
) -> dict[str, float]:
    """Signature-kernel MMD^2 of two samples of paths and its permutation-test p-value.

    .. math:: \\mathrm{MMD}^2(\\mu, \\nu) = \\mathbb{E}\\,k(X, X') - 2\\,\\mathbb{E}\\,k(X, Y)
              + \\mathbb{E}\\,k(Y, Y'), \\qquad k(x, y) = \\langle S(\\hat x), S(\\hat y)\\rangle

    with ``\\hat x = (t, x / scale)`` the time-augmented, rescaled path (``t`` in ``[0, 1]``)
    and an RBF static kernel (see :func:`_sig_gram`).
    The p-value is ``(1 + #{perm >= observed}) / (1 + n_perm)`` over random relabellings of the
    pooled sample. To stay cheap each sample is subsampled (without replacement, seeded) to at
    most ``max_samples`` paths and the time grid thinned to ``max_length`` points before the Gram
    matrix of the ``m + n`` pooled paths is computed.

    Args:
        x, y: the two samples of paths (e.g. log-price windows starting at 0).
        n_perm: number of permutations.
        max_samples: subsample each side to at most this many paths (``None``: keep all).
        max_length: thin the time grid to at most this many evenly spaced points, ends kept
            (``None``: keep all). The cost grows as ``(m + n)^2 * length^2``.
        scale: divide paths by this before the kernel (default: ``std`` of ``y``'s terminal
            values, so the paths are O(1), where the kernel is informative).
        seed: seed of the subsampling and the permutations.
        dyadic_order: PDE grid refinement of the kernel solver (0 = the data grid).
        gram_cache: a dict reused across calls with the same ``y`` (and settings) to compute
            ``y``'s own Gram block once.
        n_jobs: pysiglib threads (None: the CPUs this process may use).

    Returns:
        ``{"mmd2": ..., "p_value": ..., "n_x": m, "n_y": n, "scale": ...}``.

    Shape:
        x: ``(m, length, channels)``, y: ``(n, length, channels)``.

    References:
        Gretton et al. (2012), "A kernel two-sample test", JMLR 13. Salvi et al. (2021),
        "The signature kernel is the solution of a Goursat PDE". Issa et al. (2023),
        "Non-adversarial training of neural SDEs with signature kernel scores", arXiv 2305.16274.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if y.ndim == 2:
        y = y[..., None]
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"sig_mmd_test: path shapes differ, x {x.shape} and y {y.shape}")
    if scale is None:
        scale = float(np.std(y[:, -1] - y[:, 0])) or 1.0
    if max_length is not None and y.shape[1] > max_length:
        keep = np.unique(np.linspace(0, y.shape[1] - 1, max_length).round().astype(int))
        x, y = x[:, keep], y[:, keep]
    y = _subsample(y, max_samples, seed) / scale
    x = _subsample(x, max_samples, seed + 1) / scale
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"sig_mmd_test: need at least 2 paths per sample, got {m} and {n}")
    key = (y.shape, float(y.sum()), float((y**2).sum()), dyadic_order)
    if gram_cache is not None and gram_cache.get("key") == key:
        kyy = gram_cache["kyy"]
    else:
        kyy = _sig_gram(y, y, dyadic_order=dyadic_order, n_jobs=n_jobs)
        if gram_cache is not None:
            gram_cache.update(key=key, kyy=kyy)
    kxx = _sig_gram(x, x, dyadic_order=dyadic_order, n_jobs=n_jobs)
    kxy = _sig_gram(x, y, dyadic_order=dyadic_order, n_jobs=n_jobs)
    gram = np.block([[kxx, kxy], [kxy.T, kyy]])
    gram = 0.5 * (gram + gram.T)
    observed = np.zeros((1, m + n))
    observed[0, :m] = 1
    stat = float(_mmd2_from_gram(gram, observed)[0])
    rng = np.random.default_rng([seed, 2])
    perms = np.argsort(rng.random((n_perm, m + n)), axis=1) < m
    null = _mmd2_from_gram(gram, perms)
    p = (1 + int((null >= stat).sum())) / (1 + n_perm)
    return {"mmd2": stat, "p_value": float(p), "n_x": m, "n_y": n, "scale": float(scale)}


def _subsample(x: np.ndarray, k: int | None, seed: int) -> np.ndarray:
    if k is None or len(x) <= k:
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(len(x), k, replace=False))]
