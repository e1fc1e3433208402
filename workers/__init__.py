"""What runs: the services, the `msgstate` command line, and the operator and developer tools."""
