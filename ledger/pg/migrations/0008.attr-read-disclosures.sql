-- 0008: what each read of the ledger disclosed (AuditLogUsed v2 `disclosed`): ranges of
-- leaf indexes of a log whose entries the read returned, so the read shows up in the
-- history of every patient those entries name (docs/read-attribution.md). A projection
-- of the leaf like `events`, written in the same transaction, checked by `ledger verify`.
-- depends: 0007.security-events

CREATE TABLE read_disclosures (
    event_id   uuid   NOT NULL REFERENCES events (event_id),
    origin     text   NOT NULL,
    first_leaf bigint NOT NULL CHECK (first_leaf >= 0),
    end_leaf   bigint NOT NULL CHECK (end_leaf > first_leaf),
    span       int8range GENERATED ALWAYS AS (int8range(first_leaf, end_leaf)) STORED,
    PRIMARY KEY (event_id, origin, first_leaf)
);

-- "Which reads returned leaf i of log L?": a space-partitioning index on the range finds
-- them however long the ranges are (an export discloses whole logs), where a btree on
-- (origin, first_leaf) cannot bound its scan. SP-GiST rather than GiST: long ranges
-- widen GiST's internal nodes, and a probe cost 10-40x more (docs/read-attribution.md).
-- The origin is checked on the rows found (ranges of different logs overlap only as
-- often as there are logs); origin and event_id are in the index, so a probe reads no
-- table page once the table is vacuumed (index-only scan).
CREATE INDEX read_disclosures_span ON read_disclosures
    USING spgist (span) INCLUDE (origin, event_id);

DO $$
DECLARE t text := 'read_disclosures';
BEGIN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
END
$$;

REVOKE ALL ON read_disclosures FROM PUBLIC;
GRANT SELECT, INSERT ON read_disclosures TO ledger_appender;
GRANT SELECT ON read_disclosures TO ledger_reader;
