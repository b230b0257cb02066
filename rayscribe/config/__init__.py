"""rayscribe's settings: one class per concern over one shared base and loader (:mod:`rayscribe.config.base`),
and the checks that settings, queue messages and the HTTP API share (:mod:`rayscribe.config.checks`)."""
