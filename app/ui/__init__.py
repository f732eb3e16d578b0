"""The browser dashboard at /ui: server-rendered pages over the same stores as the API."""
