"""ragbot: a local retrieval-augmented chatbot that answers from your own documents."""

from .bot import RagBot
from .errors import RagbotError
from .settings import Settings, load_settings

__all__ = ["RagBot", "RagbotError", "Settings", "load_settings"]
__version__ = "0.1.0"
