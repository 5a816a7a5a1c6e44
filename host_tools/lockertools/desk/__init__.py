"""The staff desk: a web application on the fleet database (`lockerctl desk run`, docs/desk.md).

- app.py: the application factory (`create_app`); base.py: the middlewares (session, CSRF,
  headers), the navigation and the helpers every page uses (`page`, `run_db`, `audit_action`).
- auth.py: accounts (argon2 hashes), roles, server-side sessions, the login throttle.
- audit.py: the append-only trail of every staff action.
- i18n.py: the pages' texts in Dutch, French and English.
- live.py: door states pushed to the browser (server-sent events) as the service records them.
- pages/: one module per group of pages, each with `setup(app)`.
"""
