"""End-to-end media through the signaling service and its in-process SFU (see conftest.py)."""
