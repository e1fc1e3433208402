"""What runs: the state worker, the apps worker, the CLI and the local stack."""
