"""SCIM 2.0 protocol layer. The only package that imports scim2-models."""
