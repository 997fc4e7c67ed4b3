"""Celery workers that fan out provisioning side effects (audit, checkout-lock, notify)."""
