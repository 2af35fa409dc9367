"""The one event codec: event names, payload bodies, the seal, and reading records back.

Every writer builds its payloads here and every reader (the inline projection, the DuckDB
tables, verify) reads them back through here, so the stored format is spelled out once.
"""
