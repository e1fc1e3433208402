"""The services: state worker, apps worker, analytics consumer, HTTP API."""
