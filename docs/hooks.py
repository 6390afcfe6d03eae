"""mkdocs hook: docs/options.md's table of every `esjax.train` option, written at build
time from the Config fields' own help (one source of truth)."""

from __future__ import annotations

import dataclasses

PLACEHOLDER = "<!-- options -->"


def options_table() -> str:
    from esjax.config import Config

    rows = ["| flag | default | what it does |", "| --- | --- | --- |"]
    for f in dataclasses.fields(Config):
        if f.name == "preset":
            continue
        flag = "--env-kwarg" if f.name == "env_kwargs" else "--" + f.name.replace("_", "-")
        if f.type.startswith("bool"):
            flag = f"{flag} / --no-{flag[2:]}"
        default = f.default
        shown = "-" if default is None or default == () else f"`{default}`"
        help_text = f.metadata["help"].replace("|", "\\|")
        rows.append(f"| `{flag}` | {shown} | {help_text} |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, **kwargs):
    if page.file.src_path == "options.md":
        return markdown.replace(PLACEHOLDER, options_table())
    return markdown
