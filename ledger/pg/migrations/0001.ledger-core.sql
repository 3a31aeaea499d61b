-- 0001: the append-only core: logs, leaves, writer schemas, the event index,
-- committed Kafka positions and quarantine. Owned by the migrating role (ledger_owner).
-- depends:

CREATE TABLE logs (
    log_id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin          text NOT NULL UNIQUE CHECK (origin ~ '^[^\s+]+$'),
    topic           text NOT NULL,
    kafka_partition integer NOT NULL CHECK (kafka_partition >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition)
);

-- One row per Merkle leaf. leaf is stored verbatim (docs/leaf-format.md);
-- leaf_hash = SHA-256(0x00 || leaf). Indexes are gapless per log, in commit order.
CREATE TABLE leaves (
    log_id     integer NOT NULL REFERENCES logs (log_id),
    leaf_index bigint  NOT NULL CHECK (leaf_index >= 0),
    leaf       bytea   NOT NULL CHECK (octet_length(leaf) <= 65535),
    leaf_hash  bytea   NOT NULL CHECK (octet_length(leaf_hash) = 32),
    PRIMARY KEY (log_id, leaf_index)
);

-- Writer schemas by single-object fingerprint, so the ledger (and an export) can
-- decode every stored message without the producer library.
CREATE TABLE writer_schemas (
    fingerprint    bytea PRIMARY KEY CHECK (octet_length(fingerprint) = 8),
    full_name      text  NOT NULL,
    canonical_form text  NOT NULL,
    schema_json    text  NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now()
);

-- The event index: a projection of each leaf's event, for queries. Derived data,
-- checked against the leaves by `ledger verify`.
CREATE TABLE events (
    event_id        uuid PRIMARY KEY,
    log_id          integer NOT NULL,
    leaf_index      bigint  NOT NULL,
    kind            text    NOT NULL CHECK (kind IN ('phi_access', 'critical_result_relay')),
    event_time      timestamptz NOT NULL,
    producer_id     text    NOT NULL,
    producer_seq    bigint  NOT NULL,
    facility_id     text    NOT NULL,
    patient_id      text    NOT NULL,
    patient_issuer  text,
    patient_state   text,
    user_id         text    NOT NULL,
    user_name       text,
    user_role       text,
    user_org        text,
    dicom_event_id  text,
    action          text,
    outcome         text,
    study_uid       text,
    accession       text,
    network_address text,
    purpose_of_use  text,
    UNIQUE (log_id, leaf_index)
);
CREATE INDEX events_patient_time ON events (patient_id, event_time DESC, event_id DESC);
CREATE INDEX events_user_time    ON events (user_id, event_time DESC, event_id DESC);
CREATE INDEX events_study_time   ON events (study_uid, event_time DESC, event_id DESC) WHERE study_uid IS NOT NULL;

-- Committed Kafka positions, one row per appended batch (append-only: the current
-- position of a log is its greatest next_offset). Written in the same transaction
-- as the batch's leaves: this is what makes ingestion exactly-once.
CREATE TABLE ingest_positions (
    log_id      integer NOT NULL REFERENCES logs (log_id),
    next_offset bigint  NOT NULL CHECK (next_offset >= 0),
    first_leaf  bigint  NOT NULL,
    appended    integer NOT NULL,
    duplicates  integer NOT NULL,
    quarantined integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, next_offset)
);

-- Records that could not be appended, with their raw bytes and a specific reason.
CREATE TABLE quarantine (
    quarantine_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint  NOT NULL,
    kafka_timestamp timestamptz,
    record_key      bytea,
    record_value    bytea,
    reason          text    NOT NULL,
    detail          text    NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_position ON quarantine (topic, kafka_partition, kafka_offset);

-- Append-only, enforced inside the database: no UPDATE, DELETE or TRUNCATE.
CREATE FUNCTION reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % rejected', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['logs', 'leaves', 'writer_schemas', 'events', 'ingest_positions', 'quarantine'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- Least privilege: the appender inserts and reads, the reader reads. Nobody else writes.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT SELECT, INSERT ON logs, leaves, writer_schemas, events, ingest_positions, quarantine TO ledger_appender;
GRANT SELECT ON logs, leaves, writer_schemas, events, ingest_positions, quarantine TO ledger_reader;
