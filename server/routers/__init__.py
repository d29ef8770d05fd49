"""HTTP and WebSocket routers of the service."""
