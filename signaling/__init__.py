"""Switchboard signaling service: rooms, peers and resumable sessions over WebSocket."""

__version__ = "0.1.0"
