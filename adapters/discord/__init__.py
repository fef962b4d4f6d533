"""Discord: ask in a channel or a DM, thinking in a thread, approval by reaction (discord.py).

Not called `discord`: that name is the library's, and a package of ours with it would shadow it.
"""

from .adapter import DiscordAdapter
from .config import DiscordConfig, DiscordSetupError, intents, invite_url, permissions

__all__ = ["DiscordAdapter", "DiscordConfig", "DiscordSetupError", "intents", "invite_url", "permissions"]
