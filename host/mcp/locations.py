"""Where a stdio server's program and working folder are, the same from any working directory of the bot.

A bare command is looked up in the bot's own scripts folder (its virtual environment's `bin`) before PATH, as
if that environment were activated; a relative command or `cwd` is taken from mcp_servers.json's folder, which
is also the default `cwd`. Imports nothing from the host.
"""

import os
import shutil
import sysconfig
from pathlib import Path


def own_scripts_folder() -> Path:
    """The folder of this Python environment's console scripts (`mcpbot`, `mcpbot-filesystem`, `python`)."""
    return Path(sysconfig.get_path("scripts"))


def locate_command(command: str, config_dir: Path) -> str:
    """`command` as the bot will start it: an absolute path where it can tell, else the bare name for PATH."""
    expanded = os.path.expanduser(command)
    if os.sep in expanded:  # a path, not a name to look up
        return os.path.normpath(config_dir / expanded)
    return shutil.which(expanded, path=str(own_scripts_folder())) or command


def locate_folder(folder: str | None, config_dir: Path) -> str:
    """A working folder, relative ones taken from the config's folder; no folder means the config's folder."""
    if folder is None:
        return str(config_dir)
    return os.path.normpath(config_dir / os.path.expanduser(folder))
