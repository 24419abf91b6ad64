"""The two PII detectors ``cxguard.pii`` replaced, unchanged (``policy/detectors.py`` behind
the ``check`` matcher and ``evidence/redaction.py`` behind redaction, as of commit d35959e):
the baseline ``benchmarks/pii_bench.py`` measures against in the same process. Never imported
by the package."""
