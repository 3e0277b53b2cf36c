"""ragbot: a local retrieval-augmented chatbot that answers from your own documents."""

from ragbot.bot import RagBot
from ragbot.errors import RagbotError
from ragbot.settings import Settings, load_settings

__all__ = ["RagBot", "RagbotError", "Settings", "load_settings"]
__version__ = "0.1.0"
