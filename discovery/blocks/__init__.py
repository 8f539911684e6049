"""Mechanisms as code: the building blocks the local explorer composes into readable controllers.

`knobs` defines knobs, slots and blocks; `voting`, `pruning` and `stopping` hold the blocks (each a
method of the generated controller, its docstring naming the mechanism); `recipe` says which blocks
fill which slot and what every knob is at β=0 and β=1; `render` writes a recipe as controller source;
`evolve` mutates and recombines recipes, steered by the trace evidence of earlier evaluations.
"""

from .knobs import CORE_KNOBS, KNOBS, SLOTS, Block, Knob, Slot
from .recipe import BLOCKS, CMC_RECIPE, Recipe, by_slot, repair, seed_recipes
from .render import render

__all__ = ["BLOCKS", "CMC_RECIPE", "CORE_KNOBS", "KNOBS", "SLOTS", "Block", "Knob", "Recipe", "Slot", "by_slot",
           "render", "repair", "seed_recipes"]
