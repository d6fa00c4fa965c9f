"""Cluster mode, loaded only with --redis: Redis backend, session ledger, node registry, SFU RPC and the SFU node."""
