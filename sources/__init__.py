"""Input connectors (shipped as ``aiostream_engine.sources``)."""
