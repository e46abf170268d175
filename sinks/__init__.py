"""Output connectors (shipped as ``aiostream_engine.sinks``)."""
