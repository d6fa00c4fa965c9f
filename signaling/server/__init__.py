"""One signaling node's aiohttp shell: app, connection, hub, admin API, webhooks, WHIP."""
