"""The `msgstate` command line: a thin click layer over the services and tools."""
