"""Integrations with other frameworks, each behind its own extra and imported explicitly:

- ``intentmesh.integrations.langchain.ChatIntentmesh`` (``pip install 'intentmesh[langchain]'``)

Nothing is imported here, so ``import intentmesh`` never pulls in a framework.
"""

__all__: list[str] = []
