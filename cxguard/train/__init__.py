"""Training for the semantic classifiers (``cxguard train``; needs the ``[train]`` extra).

Nothing here is imported by the runtime or the tests: torch, transformers and scikit-learn
are used only to rebuild ``models/`` from ``data/``. The runtime scorer lives in
``cxguard/policy/classifier.py`` and needs only onnxruntime + tokenizers.
"""
