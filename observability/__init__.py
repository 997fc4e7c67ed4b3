"""What every process shares about being observed: its logs (``logs``).

Imported by gateway and workers alike, it imports nothing of ours
(tests/unit/test_layering.py), so neither learns about the other through it.
"""
