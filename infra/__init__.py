"""Shared ComponentResources and helpers for the four Pulumi layers.

Each layer's ``__main__.py`` puts the repository root on ``sys.path`` and
imports from here, so ``pulumi up`` works from the layer's own folder without
installing this package.
"""
