"""The plan language: models, the YAML reader with positions, validation and the schema.

Imports only pydantic and PyYAML: `passtplan validate` must stay cheap to start.
"""
