"""Greedy soups (Wortsman et al. 2022, Recipe 1) over adapters, driven by the user's held-out metric.

Score every ingredient on held-out data, sort by score (best first, ties keep the given order),
start the soup with the best one, then try each next ingredient once: keep it if the uniform
:func:`~adapterhub.compose.average.Average` of the soup plus it scores at least as well as the soup
(``rule=">="``, the paper) or strictly better (``rule=">"``, the official code). The result is never
worse than the best single ingredient on the held-out metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CompositionError
from ..runtime.package import AdapterPackage
from .average import Average, Ingredient, SoupPackage, read_ingredients

if TYPE_CHECKING:
    from ..runtime.handle import AdapterModel

Metric = Callable[[AdapterPackage], float]


@dataclass
class GreedySoupResult:
    package: SoupPackage
    chosen: list[int]
    """Indices (into the given ingredients) of the ingredients in the soup, in the order they were added."""
    ingredient_scores: list[float]
    score: float
    """Held-out score of the final soup."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One entry per candidate tried: ``{"ingredient", "score", "accepted"}``."""


def GreedySoup(*ingredients: Ingredient, metric: Metric, rule: str = ">=",  # noqa: N802
               model: AdapterModel | None = None, rank: int | None = None,
               name: str | None = None) -> GreedySoupResult:
    """Greedy soup: ``metric(package) -> float`` (higher is better) is evaluated on held-out data.

    ``metric`` receives single ingredients and candidate soups alike; :func:`attached` makes it a
    few lines. ``rank``/``model`` are passed to :func:`Average` (LoRA SVD, DoRA base weights).
    """
    if rule not in (">=", ">"):
        raise CompositionError(f"rule must be '>=' (paper) or '>' (official code), got {rule!r}")
    pkgs = read_ingredients(ingredients, model)
    scores = [float(metric(p)) for p in pkgs]
    order = sorted(range(len(pkgs)), key=lambda i: -scores[i])
    chosen = [order[0]]
    best = scores[order[0]]
    history: list[dict[str, Any]] = []
    for i in order[1:]:
        candidate = Average(*[pkgs[j] for j in chosen + [i]], model=model, rank=rank)
        s = float(metric(candidate))
        accepted = s >= best if rule == ">=" else s > best
        history.append({"ingredient": i, "name": pkgs[i].name, "score": s, "accepted": accepted})
        if accepted:
            chosen.append(i)
            best = s
    soup = Average(*[pkgs[j] for j in chosen], model=model, rank=rank, name=name)
    soup.soup["kind"] = "greedy"
    soup.soup["greedy"] = {"rule": rule, "held_out_score": best,
                           "ingredient_scores": [{"name": p.name, "score": s} for p, s in zip(pkgs, scores, strict=True)],
                           "tried": history}
    return GreedySoupResult(soup, chosen, scores, best, history)


@contextmanager
def attached(ah: AdapterModel, pkg: AdapterPackage, *, name: str = "_soup_probe") -> Iterator[str]:
    """Attach ``pkg`` as the only active adapter for the duration of the block, then remove it.

    The previous active set (and the head the package replaced) are restored on exit.
    """
    before = ah.active
    ah.load_package(pkg, name=name, activate=False)
    try:
        ah.activate(name)
        yield name
    finally:
        ah.remove(name)
        # composition blocks (Mix, Ensemble, ...) are restored too, not only plain adapter names
        ah.activate(*[b for b in before if not isinstance(b, str) or b in ah.adapters])


__all__ = ["GreedySoup", "GreedySoupResult", "attached"]
