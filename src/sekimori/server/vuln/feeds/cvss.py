"""CVSS v3.x base scores from vectors (OSV records carry only the vector), and the
qualitative rating (CVSS v3.1 specification, section 7 and appendix A)."""

from __future__ import annotations

import math

__all__ = ["cvss3_base_score", "rating"]

_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}


def _roundup(value: float) -> float:
    # Appendix A: round up to one decimal without floating-point surprises.
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000.0
    return (math.floor(scaled / 10_000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float | None:
    """The base score of a ``CVSS:3.0/…`` or ``CVSS:3.1/…`` vector; None when the
    vector is not a complete, valid v3 base vector."""
    parts = vector.strip().split("/")
    if not parts or parts[0] not in ("CVSS:3.0", "CVSS:3.1"):
        return None
    metrics: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition(":")
        if not sep or key in metrics:
            return None
        metrics[key] = value
    try:
        scope = metrics["S"]
        av = _WEIGHTS["AV"][metrics["AV"]]
        ac = _WEIGHTS["AC"][metrics["AC"]]
        pr = _PR[scope][metrics["PR"]]
        ui = _WEIGHTS["UI"][metrics["UI"]]
        c = _WEIGHTS["C"][metrics["C"]]
        i = _WEIGHTS["I"][metrics["I"]]
        a = _WEIGHTS["A"][metrics["A"]]
    except KeyError:
        return None
    iss = 1 - (1 - c) * (1 - i) * (1 - a)
    changed = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    impact = 6.42 * iss if scope == "U" else changed
    exploitability = 8.22 * av * ac * pr * ui
    if impact <= 0:
        return 0.0
    if scope == "U":
        return _roundup(min(impact + exploitability, 10.0))
    return _roundup(min(1.08 * (impact + exploitability), 10.0))


def rating(score: float | None) -> str:
    """CRITICAL / HIGH / MEDIUM / LOW / NONE, or "" without a score."""
    if score is None:
        return ""
    if score == 0:
        return "NONE"
    if score < 4.0:
        return "LOW"
    if score < 7.0:
        return "MEDIUM"
    if score < 9.0:
        return "HIGH"
    return "CRITICAL"
