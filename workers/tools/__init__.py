"""Operator and developer tooling: the local stack, fault runs, fuzz records, the demo."""
