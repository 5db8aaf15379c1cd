"""HTTP: the ASGI app (composition root), authentication, health endpoints."""
