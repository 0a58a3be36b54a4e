"""Shared ComponentResources and helpers for the four Pulumi layers.

Installed as part of the repository's root project (pyproject.toml), editable:
each layer's requirements.txt holds ``-e ..``, so the virtualenv pulumi builds in
the layer's folder imports ``infra`` with no ``sys.path`` edits, and the
development venv (``pip install -e .`` at the root) does the same for the tests.
"""
