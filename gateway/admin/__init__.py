"""The admin pages: sign-in, Settings → Integrations → SCIM 2.0, staff, activity.

Server-rendered (Jinja2) by the gateway process; a little JavaScript for copy
buttons and the activity page's refresh, and nothing that needs a build. The
pages' routes are in gateway/admin/routes.py; this package itself imports
nothing, so that the ``simpleams`` command can use gateway/admin/accounts.py
without loading the pages.
"""
