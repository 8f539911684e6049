"""autotts.discovery: the agentic explorer loop that writes, evaluates and refines controllers.

An explorer (`explorers/`: local search, Anthropic, any OpenAI-compatible model) proposes controller
code; `evaluate` scores it in a `sandbox` child process over a β sweep on the search stores;
`history` persists every evaluation atomically (resumable); `finalize` scores the finalists on
held-out stores and writes artifacts and the `report`. `loop.run_discovery` ties it together and
`autotts discover` is its command line. Importing this package imports nothing heavy.
"""
