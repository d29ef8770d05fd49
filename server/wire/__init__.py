"""Wire formats of the streaming API: `inbound` (what clients send) and `outbound` (what the service sends)."""
