"""The web console: server-rendered pages (Jinja2 + htmx) for administrators."""
