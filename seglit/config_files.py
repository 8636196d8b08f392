"""Parts of a recipe given as YAML files (``data: data.yaml``), read into the recipe.

The Lightning CLI takes the path of a YAML file wherever a class's config goes, read from
the current folder. A recipe reads such files when it is loaded: the variants' configs
then hold what decided their results (a later edit of the file is a changed config), an
override or a smoke block merges into the file's content instead of replacing it, and each
variant's ``config.yaml`` works from its run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIG_FILE_KEYS = (
    "model",
    "data",
    "trainer",
    "model.net",
    "model.optimizer",
    "model.lr_scheduler",
)
"""The keys whose value may be the path of a YAML file holding it (parents before children)."""


def is_config_file(value: Any) -> bool:
    """Whether ``value`` is written as the path of a YAML file."""
    return isinstance(value, str) and value.endswith((".yaml", ".yml"))


def read_config_file(value: str, where: str) -> Any:
    """The content of the YAML file ``value`` names.

    Raises:
        seglit.recipe.RecipeError: The file does not exist or is not valid YAML.
    """
    from seglit.recipe import RecipeError, load_yaml

    path = Path(value)
    if not path.is_file():
        raise RecipeError(
            f"{where}: config file {value!r} not found (relative to the current folder "
            f"{Path.cwd()})"
        )
    return load_yaml(path.read_text(), path)


def read_config_files(config: dict[str, Any], where: str) -> dict[str, Any]:
    """``config`` with each :data:`CONFIG_FILE_KEYS` value that names a file replaced, in
    place, by the file's content (``where`` names the config in errors)."""
    from seglit.recipe import get_dotted, set_dotted

    for key in CONFIG_FILE_KEYS:
        value = get_dotted(config, key)
        if is_config_file(value):
            set_dotted(config, key, read_config_file(value, f"{where}: {key}"))
    return config
