"""A developer's machine: the PostgreSQL and Redis that `make up` and `make test`
run when DATABASE_URL / REDIS_URL are not set (docs/development.md).

Not production code. gateway, workers and models never import it
(tests/unit/test_layering.py), the Dockerfile does not copy it and the
project's package list leaves it out; it imports nothing of theirs either.
"""
