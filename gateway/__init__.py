"""The SCIM gateway: a thin Starlette app that acknowledges writes against PostgreSQL."""
