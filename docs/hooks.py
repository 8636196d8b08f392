"""MkDocs hooks: pages that show what the code declares, rendered at build time."""

from __future__ import annotations

from typing import Any

PLACEHOLDER = "<!-- export-support-matrix -->"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the export-support placeholder with the model registry's matrix."""
    if PLACEHOLDER not in markdown:
        return markdown
    from seglit.models.registry import export_support_table

    return markdown.replace(PLACEHOLDER, export_support_table())
