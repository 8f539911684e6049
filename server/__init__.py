"""autotts.server: the OpenAI-compatible gateway that runs controllers against live engines.

Not built yet beyond helpers (see the gateway issue); the package exists so the layout is fixed.
"""
