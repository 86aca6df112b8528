"""Loaded by pytest before any test module: importing edgebnn first sets TF_USE_LEGACY_KERAS, so test modules may
import larq and tensorflow in any order (ruff sorts third-party imports before ours)."""

import edgebnn  # noqa: F401
