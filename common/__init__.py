"""Facts that several components must agree on, defined once (see common/facts.py)."""
