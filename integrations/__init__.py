"""Services built on the producer library: the ATNA receiver, the Orthanc plugin, the
inbound FHIR AuditEvent mapping and the event simulator.

Invariant: these import ``producers`` through its public surface only (``from producers
import ...``; ``lint-imports`` enforces it), and ``producers`` never imports them, so the
embeddable library stays small and what an integrator uses is what these use.
"""
