"""Adapter tests: each drives its real framework offline."""
