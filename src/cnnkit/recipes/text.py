"""Recipes as text: the catalogue's list (``cnnkit recipes``) and a table of measured results."""

from __future__ import annotations

from typing import Any

from cnnkit.recipes.catalogue import RECIPES

__all__ = ["format_recipe_list", "format_results"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def format_results(results: list[dict[str, Any]], sources: bool = True) -> str:
    """A plain-text table: recipe, variant, model, split, reported, measured, epochs, seconds."""
    header = ("recipe", "variant", "model", "split", "reported", "measured", "epochs", "seconds")
    lines = [header]
    for res in results:
        for row in res["rows"]:
            split = f"{row['split']} ({row['n']})" if row.get("split") else "-"
            lines.append((res["recipe"], res["variant"], row["label"], split, _pct(row["reported"]),
                          _pct(row["measured"]), str(row["epochs"]), f"{row['seconds']:.1f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]
    if sources:
        text.append("")
        for res in results:
            text.append(f"{res['recipe']}: reported figure: {res['source']}")
            for row in res["rows"]:
                if row.get("output"):
                    text.append(f"{res['recipe']}: wrote {row['output']}")
    return "\n".join(text)


def format_recipe_list(verbose: bool = False) -> str:
    """One line per recipe (name, data, reported figure); ``verbose`` adds description, source, needs."""
    width = max(len(n) for n in RECIPES)
    lines = []
    for recipe in RECIPES.values():
        if recipe.kind == "sobel":
            reported = "nothing (a demo: writes sobel.png)"
        elif recipe.compare:
            reported = " vs ".join(f"{m} {_pct(v) if v is not None else '(none)'}" for m, v in recipe.compare)
        elif recipe.target is not None:
            reported = f"(no tutorial) target {_pct(recipe.target)}"
        else:
            reported = _pct(recipe.reported) if recipe.reported is not None else "not published"
        lines.append(f"{recipe.name:<{width}}  {recipe.data:<22}  reported {reported}")
        if verbose:
            for label, text in (("what", recipe.description), ("source", recipe.source), ("needs", recipe.needs)):
                lines.append(f"{'':<{width}}  {label}: {text}")
            lines.append("")
    return "\n".join(lines).rstrip("\n")
