"""autotts.discovery: the agentic explorer loop that writes, evaluates and refines controllers.

Not built yet (see the discovery issue); the package exists so the layout is fixed.
"""
