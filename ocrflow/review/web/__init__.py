"""The review web app's routers, one per area, and the dependencies they share.

- :mod:`.deps`: the app's services, the signed-in reviewer, CSRF-checked forms, item ids.
- :mod:`.signin`: ``/login`` and ``/logout``.
- :mod:`.listing`: the queue list (``/``) and ``/next``.
- :mod:`.items`: one item: its page, claim, release, decide, live validation, page images.

:func:`ocrflow.review.app.create_app` puts them together.
"""
