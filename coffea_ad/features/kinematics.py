"""Four-momentum arithmetic on awkward columns (eager, virtual and dask-awkward alike).

The functions take and return plain numeric columns rather than vector records: they work the same on
NanoEvents fields of any mode and on flat numpy arrays, stay in float64 (NanoAOD stores float32; invariant masses of light systems
lose digits to cancellation in float32), and propagate None from padded objects.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

__all__ = ["as_float64", "four_momentum", "invariant_mass", "delta_phi", "delta_r"]


def as_float64(column: Any) -> Any:
    """Return ``column`` with float64 values (structure, None and dask laziness kept; numpy stays numpy)."""
    if isinstance(column, np.ndarray):
        return column.astype(np.float64, copy=False)
    return ak.values_astype(column, np.float64)


def four_momentum(pt: Any, eta: Any, phi: Any, mass: Any) -> tuple[Any, Any, Any, Any]:
    """Return ``(px, py, pz, E)`` in float64 from ``(pT, η, φ, m)`` columns (GeV, GeV, rad, GeV)."""
    pt, eta, phi, mass = (as_float64(column) for column in (pt, eta, phi, mass))
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    return px, py, pz, energy


def invariant_mass(px: Any, py: Any, pz: Any, energy: Any) -> Any:
    """Return ``sqrt(E² − |p|²)``, with a negative m² from rounding clipped to zero."""
    mass_squared = energy**2 - px**2 - py**2 - pz**2
    return np.sqrt(np.maximum(mass_squared, 0.0))


def delta_phi(phi1: Any, phi2: Any) -> Any:
    """Return φ1 − φ2 wrapped into [−π, π)."""
    return (as_float64(phi1) - as_float64(phi2) + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    """Return ΔR = sqrt(Δη² + Δφ²) with Δφ wrapped into [−π, π)."""
    deta = as_float64(eta1) - as_float64(eta2)
    return np.sqrt(deta**2 + delta_phi(phi1, phi2) ** 2)
