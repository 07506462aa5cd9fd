"""One-shot tools: replay the sample events, export the record's JSON Schema."""

__all__ = ["export_schema", "replay"]
