"""Helpers every test family shares (import from here, not from another folder's conftest)."""
