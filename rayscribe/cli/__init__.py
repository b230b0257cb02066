"""The ``rayscribe`` command line (entry point :data:`rayscribe.cli.app.app`).

Each module parses its commands' arguments, calls one composition root (``jobs.batch.run_batch``,
``jobs.worker.run_worker``, ``serve.run.run_server``) imported inside the command, and prints what it returns.
"""
