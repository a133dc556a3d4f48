-- One outbox row per transaction and org rather than one per event: the
-- events a transaction commits for an org, in the order it wrote them. A
-- conversion wrote about four rows (with their index entries, and the
-- relay's read and delete of each); now a batch of requests writes one.
-- Rows left by the earlier layout become rows of one event each, in their
-- order, so that nothing committed goes unpublished.
ALTER TABLE outbox RENAME TO outbox_events_v1;
ALTER INDEX outbox_pkey RENAME TO outbox_events_v1_pkey;
ALTER SEQUENCE outbox_seq_seq RENAME TO outbox_events_v1_seq_seq;

CREATE TABLE outbox (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- null for the rejections of requests too broken to name their org
    org_id     text,
    event_ids  uuid[] NOT NULL,
    subjects   text[] NOT NULL,
    payloads   bytea[] NOT NULL,
    -- per event, the NATS headers it carries (its trace context), or null
    headers    jsonb[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(event_ids) > 0
        AND cardinality(subjects) = cardinality(event_ids)
        AND cardinality(payloads) = cardinality(event_ids)
        AND cardinality(headers) = cardinality(event_ids))
);

-- A row of many events is compressed as it is written and decompressed as
-- the relay reads it: with lz4 (where the server has it), which takes a
-- fraction of the CPU of the default pglz; and kept in the row (MAIN) as
-- long as it fits the page, rather than moved in chunks to the TOAST table.
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN payloads SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL; -- a server built without lz4 keeps its default
END $$;
ALTER TABLE outbox ALTER COLUMN payloads SET STORAGE MAIN;

INSERT INTO outbox (org_id, event_ids, subjects, payloads, headers, created_at)
SELECT org_id, ARRAY[event_id], ARRAY[subject], ARRAY[payload], ARRAY[headers], created_at
FROM outbox_events_v1 ORDER BY seq;

DROP TABLE outbox_events_v1;

-- The outbox one event per row, for reading.
CREATE VIEW outbox_events AS
SELECT o.seq, e.n AS position, o.org_id, e.event_id, e.subject, e.payload, e.headers, o.created_at
FROM outbox o, unnest(o.event_ids, o.subjects, o.payloads, o.headers) WITH ORDINALITY AS e(event_id, subject, payload, headers, n);
