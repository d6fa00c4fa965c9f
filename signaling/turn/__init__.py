"""NAT traversal: ephemeral TURN REST credentials and coturn configuration.

- :mod:`.credentials`: ``ice_servers()`` for ``welcome``, ``make_credentials()`` (pure).
- :mod:`.uris`: strict parsing of ``stun:``/``turn:`` URLs (pure).
- :mod:`.coturn`: renders turnserver.conf from turn-config/'s template (pure).
- :mod:`.protocol` and :mod:`.client`: a minimal STUN/TURN client (sans-I/O core, asyncio
  shell), used by :mod:`.check` behind ``switchboard turn check``.
- :mod:`.cli`: ``switchboard turn credentials|config|check``.
"""
