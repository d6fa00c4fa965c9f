"""Where rooms, membership and peer-to-peer delivery live: memory (default) or Redis."""

from signaling.backend.base import (
    Backend,
    BackendUnavailable,
    Control,
    Delivery,
    Member,
    SessionMoved,
)
from signaling.backend.memory import MemoryBackend

__all__ = ["Backend", "BackendUnavailable", "Control", "Delivery", "Member", "MemoryBackend", "SessionMoved"]
