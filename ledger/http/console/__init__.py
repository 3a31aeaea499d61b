"""The investigator and auditor console: server-rendered pages under ``/console/``.

An HTTP adapter like the JSON API: it reaches data only through the API's ports. The
in-browser check of an entry's proof (``static/verify.js``) and what it needs from the
server (``verifierkeys``, ``staticfiles``): docs/console.md.
"""
