"""saccade inside other tools of the field (pysaliency: ``code.interop.pysaliency``)."""
