"""In-memory adapters of the state ports (adapters layer): the embedded default.

One process, no server: what ``make run`` and a single-replica deployment
use. Each has a twin behind the same port for a shared store, and each runs
through the same port contract suite (``tests/ports``).
"""

from .conversation_window import InMemoryConversationWindows
from .dedup import InMemoryDeduplicator
from .rate_limiter import InMemoryRateLimiter
from .send_ledger import InMemorySendLedger
from .status_tracker import InMemoryStatusTracker
from .template_cache import InMemoryTemplateCache

__all__ = [
    "InMemoryConversationWindows",
    "InMemoryDeduplicator",
    "InMemoryRateLimiter",
    "InMemorySendLedger",
    "InMemoryStatusTracker",
    "InMemoryTemplateCache",
]
