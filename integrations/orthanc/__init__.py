"""PHI audit for Orthanc: a Python plugin that emits an audit event for every PHI access.

Layout: ``config`` (the ``PhiLedger`` section of Orthanc's configuration), ``routes``
(which REST requests touch PHI), ``resolve`` (Orthanc resource id to patient and study,
cached), ``audit`` (the callbacks' logic and the worker thread; no ``orthanc`` import, so
it is tested without Orthanc), ``plugin`` (the glue to the ``orthanc`` module) and
``orthanc_plugin.py`` (the script Orthanc's ``PythonScript`` option points at).
See docs/orthanc.md.
"""
