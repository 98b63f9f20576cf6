"""Tutorial recipes: the Keras/TensorFlow CNN tutorials, each runnable end to end by name.

The catalogue is data (:mod:`cnnkit.recipes.catalogue`: :data:`RECIPES`, one frozen :class:`Recipe`
each, with the tutorial's settings and the modern ``fast`` ones); :mod:`cnnkit.recipes.run` trains
one (:func:`run_recipe`) and returns the measured accuracy next to the figure the tutorial
reported; :mod:`cnnkit.recipes.text` formats the list and the results.
"""

from cnnkit.recipes.catalogue import RECIPES, Recipe
from cnnkit.recipes.run import check_weights, get_recipe, recipe_config, run_recipe
from cnnkit.recipes.text import format_recipe_list, format_results

__all__ = ["RECIPES", "Recipe", "check_weights", "format_recipe_list", "format_results", "get_recipe",
           "recipe_config", "run_recipe"]
