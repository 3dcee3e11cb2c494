"""The dijet function and its binned Poisson maximum-likelihood fit to an mjj spectrum.

f(x) = p0 (1 − x)^p1 / x^(p2 + p3 ln x), x = mjj / √s (√s = 13 TeV by default, mjj in GeV), in events per
GeV; the 3-parameter version has p3 = 0. Expected bin yields are integrals of f over the bin (8-point
Gauss–Legendre per bin).

ln f = ln p0 + p1 ln(1 − x) − p2 ln x − p3 ln²x is linear in θ = (ln p0, p1, p2, p3), so the fit works in θ
with the analytic gradient and Hessian of the Poisson negative log-likelihood (scipy's ``trust-exact``),
starting from a weighted linear least-squares fit of ln(counts / width). The covariance is the inverse
Hessian at the minimum; it is reported for (p0, p1, p2, p3) by the Jacobian of θ -> p.

This fit of a parametric function is the one likelihood coffea_ad writes by hand: pyhf has no analytic
shapes. Its result becomes a pyhf template with the fit covariance as ``histosys`` (or ``shapesys``)
modifiers in :mod:`coffea_ad.stats.bumphunt`.

References:
    CMS dijet searches: arXiv:1911.03947; ATLAS: arXiv:1910.08447; the function: UA2, CDF (arXiv:0812.4036).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

from coffea_ad.errors import ConfigurationError

__all__ = ["SQRT_S", "DijetFit", "dijet_function", "fit_dijet", "dijet_yields"]

logger = logging.getLogger(__name__)

#: Centre-of-mass energy of the LHC Run 2 in GeV.
SQRT_S = 13000.0

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)


def _features(x: np.ndarray, n_parameters: int) -> np.ndarray:
    log_x = np.log(x)
    columns = [np.ones_like(x), np.log1p(-x), -log_x, -(log_x**2)]
    return np.stack(columns[:n_parameters], axis=-1)


def _check_edges(edges, sqrt_s: float) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ConfigurationError("mjj bin edges must be an increasing 1D array of at least two values")
    if edges[0] <= 0 or edges[-1] >= sqrt_s:
        raise ConfigurationError(
            f"mjj bin edges must lie in (0, sqrt_s = {sqrt_s:g}) GeV, got {edges[0]:g}..{edges[-1]:g}"
        )
    return edges


def _quadrature(edges: np.ndarray, sqrt_s: float, n_parameters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin features ``(n_bins, 8, n_par)`` at the quadrature nodes and weights ``(n_bins, 8)`` in GeV."""
    half = 0.5 * np.diff(edges)[:, None]
    centre = 0.5 * (edges[1:] + edges[:-1])[:, None]
    mjj = centre + half * _NODES[None, :]
    return _features(mjj / sqrt_s, n_parameters), half * _WEIGHTS[None, :]


def _parameters(theta: np.ndarray) -> np.ndarray:
    params = np.zeros(4)
    params[: theta.size] = theta
    params[0] = np.exp(theta[0])
    return params


def dijet_function(mjj: ArrayLike, parameters: ArrayLike, *, sqrt_s: float = SQRT_S) -> np.ndarray:
    """f(mjj) = p0 (1 − x)^p1 / x^(p2 + p3 ln x) with x = mjj/√s (3 or 4 parameters; events per GeV)."""
    p = np.zeros(4)
    given = np.asarray(parameters, dtype=np.float64)
    if given.size not in (3, 4):
        raise ConfigurationError(f"the dijet function takes 3 or 4 parameters, got {given.size}")
    p[: given.size] = given
    x = np.asarray(mjj, dtype=np.float64) / sqrt_s
    log_x = np.log(x)
    return p[0] * (1 - x) ** p[1] / x ** (p[2] + p[3] * log_x)


def _theta_yields(
    theta: np.ndarray, features: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected yields, their gradients ``(n_bins, n_par)`` and Hessians ``(n_bins, n_par, n_par)`` in θ."""
    density = weights * np.exp(features @ theta)
    mu = density.sum(axis=1)
    grad = np.einsum("bk,bkp->bp", density, features)
    hess = np.einsum("bk,bkp,bkq->bpq", density, features, features)
    return mu, grad, hess


@dataclass(frozen=True)
class DijetFit:
    """Result of :func:`fit_dijet`.

    ``theta``/``theta_covariance``: the fitted (ln p0, p1, p2[, p3]) and their covariance;
    ``parameters``/``covariance``: the same for (p0, p1, p2[, p3]). ``chi2`` is the Poisson deviance
    (likelihood-ratio χ²) over the fitted bins with ``ndf`` = fitted bins − parameters.
    """

    theta: np.ndarray
    theta_covariance: np.ndarray
    sqrt_s: float
    chi2: float
    ndf: int
    converged: bool

    @property
    def n_parameters(self) -> int:
        return self.theta.size

    @property
    def parameters(self) -> np.ndarray:
        return _parameters(self.theta)[: self.n_parameters]

    @property
    def covariance(self) -> np.ndarray:
        jacobian = np.eye(self.n_parameters)
        jacobian[0, 0] = np.exp(self.theta[0])
        return jacobian @ self.theta_covariance @ jacobian.T

    @property
    def uncertainties(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def p_value(self) -> float:
        """Goodness of fit: p-value of the deviance for ``ndf`` degrees of freedom."""
        return float(stats.chi2.sf(self.chi2, self.ndf)) if self.ndf > 0 else float("nan")

    def yields(self, edges: ArrayLike) -> np.ndarray:
        """Expected events per bin for ``edges`` (GeV)."""
        return dijet_yields(edges, self.theta, sqrt_s=self.sqrt_s)

    def yield_uncertainties(self, edges: ArrayLike) -> np.ndarray:
        """One-standard-deviation uncertainty of the yields from the fit covariance (linear propagation)."""
        features, weights = _quadrature(_check_edges(edges, self.sqrt_s), self.sqrt_s, self.n_parameters)
        _, grad, _ = _theta_yields(self.theta, features, weights)
        return np.sqrt(np.einsum("bp,pq,bq->b", grad, self.theta_covariance, grad))

    def eigen_variations(self, edges: ArrayLike) -> list[tuple[np.ndarray, np.ndarray]]:
        """Yields at θ̂ ∓ √λ_k v_k for each eigenvector v_k of the covariance: ``[(down, up), ...]``.

        Independent variations whose quadratic sum reproduces the full covariance, correlations included.
        """
        values, vectors = np.linalg.eigh(self.theta_covariance)
        variations = []
        for value, vector in zip(values, vectors.T, strict=True):
            shift = np.sqrt(max(value, 0.0)) * vector
            down = dijet_yields(edges, self.theta - shift, sqrt_s=self.sqrt_s)
            up = dijet_yields(edges, self.theta + shift, sqrt_s=self.sqrt_s)
            variations.append((down, up))
        return variations

    def to_dict(self) -> dict:
        return {
            "function": "p0 (1-x)^p1 / x^(p2 + p3 ln x), x = mjj/sqrt_s",
            "n_parameters": self.n_parameters,
            "sqrt_s_GeV": self.sqrt_s,
            "parameters": self.parameters.tolist(),
            "uncertainties": self.uncertainties.tolist(),
            "covariance": self.covariance.tolist(),
            "chi2": self.chi2,
            "ndf": self.ndf,
            "p_value": self.p_value,
            "converged": self.converged,
        }


def dijet_yields(edges: ArrayLike, theta: ArrayLike, *, sqrt_s: float = SQRT_S) -> np.ndarray:
    """Expected events per bin of the dijet function for θ = (ln p0, p1, p2[, p3])."""
    theta = np.asarray(theta, dtype=np.float64)
    features, weights = _quadrature(_check_edges(edges, sqrt_s), sqrt_s, theta.size)
    return (weights * np.exp(features @ theta)).sum(axis=1)


def _start(counts: np.ndarray, edges: np.ndarray, sqrt_s: float, n_parameters: int) -> np.ndarray:
    """Weighted least squares of ln(counts/width) on the features at the bin centres (bins with counts)."""
    filled = counts > 0
    centres = 0.5 * (edges[1:] + edges[:-1])[filled]
    design = _features(centres / sqrt_s, n_parameters)
    target = np.log(counts[filled] / np.diff(edges)[filled])
    sqrt_w = np.sqrt(counts[filled])
    theta, *_ = np.linalg.lstsq(design * sqrt_w[:, None], target * sqrt_w, rcond=None)
    return theta


def fit_dijet(
    counts: ArrayLike,
    edges: ArrayLike,
    *,
    n_parameters: int = 4,
    mask: ArrayLike | None = None,
    sqrt_s: float = SQRT_S,
) -> DijetFit:
    """Fit the dijet function to binned mjj counts with a Poisson likelihood.

    ``mask`` (booleans per bin) selects the bins that enter the fit, e.g. the sidebands of a window.
    """
    if n_parameters not in (3, 4):
        raise ConfigurationError(f"n_parameters must be 3 or 4, got {n_parameters}")
    edges = _check_edges(edges, sqrt_s)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (edges.size - 1,):
        raise ConfigurationError(f"counts has {counts.size} bins but the edges define {edges.size - 1}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ConfigurationError("mjj counts must be finite and non-negative")
    selected = np.ones(counts.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if selected.shape != counts.shape:
        raise ConfigurationError(f"mask has {selected.size} entries, the histogram has {counts.size} bins")
    n_fit = int(np.sum(selected & (counts > 0)))
    if n_fit <= n_parameters:
        raise ConfigurationError(
            f"the dijet fit needs more than {n_parameters} non-empty bins, got {n_fit} (in the fit range)"
        )
    features, weights = _quadrature(edges, sqrt_s, n_parameters)
    features, weights, n = features[selected], weights[selected], counts[selected]

    filled = n > 0

    def deviance(theta):
        # 2 (NLL − NLL of the saturated model): O(ndf) at the minimum, so the optimizer keeps full precision
        mu, _, _ = _theta_yields(theta, features, weights)
        return 2.0 * float(np.sum(mu - n) + np.sum(n[filled] * np.log(n[filled] / mu[filled])))

    def gradient(theta):
        mu, grad, _ = _theta_yields(theta, features, weights)
        return 2.0 * ((1 - n / mu)[:, None] * grad).sum(axis=0)

    def hessian(theta):
        mu, grad, hess = _theta_yields(theta, features, weights)
        return 2.0 * (np.einsum("b,bpq->pq", 1 - n / mu, hess) + np.einsum("b,bp,bq->pq", n / mu**2, grad, grad))

    start = _start(np.where(selected, counts, 0.0), edges, sqrt_s, n_parameters)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            result = optimize.minimize(
                deviance, start, jac=gradient, hess=hessian, method="trust-exact", options={"gtol": 1e-6, "maxiter": 200}
            )
        except ValueError as error:  # the optimizer stepped where the function overflows: too few events
            raise ConfigurationError(
                f"the dijet fit failed on {int(n.sum())} events in {n_fit} filled bins ({error}); "
                "use fewer parameters or a wider mjj range"
            ) from error
    theta = result.x
    # the Hessian of the deviance is twice that of the negative log-likelihood
    information = 0.5 * hessian(theta)
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        covariance = np.linalg.pinv(information)
    # trust-exact may stop on rounding ("bad approximation") at the minimum: judge by the Newton decrement
    step = covariance @ (0.5 * gradient(theta))
    converged = bool(result.success) or float(0.5 * gradient(theta) @ step) < 1e-6
    if not converged:
        logger.warning("dijet fit did not converge: %s", result.message)
    return DijetFit(
        theta=theta,
        theta_covariance=0.5 * (covariance + covariance.T),
        sqrt_s=sqrt_s,
        chi2=float(result.fun),
        ndf=int(selected.sum()) - n_parameters,
        converged=converged,
    )
