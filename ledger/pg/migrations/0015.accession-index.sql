-- 0015: "who touched the study with accession number A?" An investigator often holds an
-- accession number (from the RIS or a report) and not the study's UID. The accession
-- history (/v1/accessions/{accession}/accesses, the console's search by accession, and
-- `ledger history --accession`) walks this index newest first, as the study history walks
-- events_study_time. An index only: the rows, and what `ledger verify` checks of them,
-- are unchanged.
-- depends: 0014.registry-changes

CREATE INDEX events_accession_time ON events (accession, event_time DESC, event_id DESC)
    WHERE accession IS NOT NULL;
