"""PHI audit for Orthanc: a Python plugin that emits an audit event for every PHI access.

Layout: ``config`` (the ``PhiLedger`` section of Orthanc's configuration), ``routes``
(which REST requests touch PHI), ``resolve`` (Orthanc resource id to patient and study,
cached), ``audit`` (the callbacks and the worker thread, coordinating: ``callers`` who
asked and why, ``handoff`` the bounded queue, ``subjects`` which patient and study,
``reads`` / ``imports`` / ``deletes`` / ``exports`` one kind of event each, ``build`` the
event, ``delivery`` the sink and counters; no ``orthanc`` import, so all of it is tested
without Orthanc), the C-FIND SCP that replaces Orthanc's (``dimse`` the callback,
``dimse_find`` Orthanc's answers rebuilt from its REST API, ``dimse_counters`` and
``dimse_tags`` what Orthanc computes and how it matches, ``dimse_audit`` the Query
event), ``rest_wrappers`` (the REST routes the plugin answers for Orthanc: ``answers``
Orthanc's answers and errors, ``archives`` downloads built as jobs, ``resultsets`` and
``disclosures`` the patients an answer returned, as v2 events), ``plugin`` (the glue to
the ``orthanc`` module) and ``orthanc_plugin.py`` (the script Orthanc's ``PythonScript``
option points at).
It imports only ``producers``' public surface. See docs/orthanc.md.
"""
