"""The web pages: a user's own history, restores and export; the operator's view of
whether the data is safe. Server-rendered (Jinja2), one small script for progress."""
