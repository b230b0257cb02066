"""rayscribe's HTTP API: an OpenAI-compatible transcription service on Ray Serve.

``serve.app`` binds the application (``build_app``); ``serve/config.yaml`` deploys it with ``serve deploy``.
Ray is imported by the submodules, not here, so ``import serve`` stays cheap.
"""
