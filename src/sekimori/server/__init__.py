"""The server: agent channel, ingest, store, PKI, operations endpoints."""
