"""The HTTP API (FastAPI): health, metrics, and the `/api/v1` resources behind bearer tokens."""
