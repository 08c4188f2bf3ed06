"""Benchmarks run from the command line: ``lumisurf bench ablate SPEC.yaml`` (A/B variants)."""
