-- 0020: the check that a listing's snapshot is signed on this server, as a function a
-- history statement calls (issue #19). A listing is pinned to signed log sizes (its
-- cursor carries them); a replica behind the server that gave them must refuse rather
-- than answer a page with entries missing. In the statement's WHERE with only its
-- parameter as input, it is a one-time filter: evaluated once, before any row, in the
-- statement's own snapshot, so the check and the page can no longer see different
-- states, and the page costs one round trip instead of BEGIN, check, page, COMMIT.
-- Raises SQLSTATE LDG01 (the reader maps it to a pushback with Retry-After).
-- depends: 0019.period-archives

CREATE FUNCTION ledger_require_signed(p_sizes bigint[]) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF EXISTS (
        SELECT 1
        FROM unnest(p_sizes) WITH ORDINALITY AS s(size, log_id)
        WHERE s.size > coalesce(
            (SELECT max(c.size) FROM checkpoints c WHERE c.log_id = s.log_id), 0)
    ) THEN
        RAISE EXCEPTION 'this database server has not yet replayed the signed checkpoints '
                        'the listing is pinned to'
            USING ERRCODE = 'LDG01';
    END IF;
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION ledger_require_signed(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_require_signed(bigint[]) TO ledger_reader;
