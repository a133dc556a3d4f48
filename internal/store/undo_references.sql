-- The rows that point at a record a lead's qualification created and that
-- undoing it would not delete: other leads, contacts and opportunities not
-- created by it, notes and attachments of other leads. $1 is the org, $2 the
-- lead. Each row: the referenced record's type and id, the referrer's type
-- and id.
WITH created AS (
    SELECT (e->>'id')::uuid AS id
    FROM leads l,
        jsonb_array_elements(jsonb_build_array(l.conversion->'account', l.conversion->'contact')
            || COALESCE(l.conversion->'opportunities', '[]'::jsonb)) e
    WHERE l.org_id = $1 AND l.id = $2 AND l.status = 'qualified' AND e->>'outcome' = 'created'
)
SELECT 'account', c.account_id::text, 'contact', c.id::text FROM contacts c
    WHERE c.org_id = $1 AND c.account_id IN (SELECT id FROM created) AND c.id NOT IN (SELECT id FROM created)
UNION ALL
SELECT 'account', o.account_id::text, 'opportunity', o.id::text FROM opportunities o
    WHERE o.org_id = $1 AND o.account_id IN (SELECT id FROM created) AND o.id NOT IN (SELECT id FROM created)
UNION ALL
SELECT 'contact', o.contact_id::text, 'opportunity', o.id::text FROM opportunities o
    WHERE o.org_id = $1 AND o.contact_id IN (SELECT id FROM created) AND o.id NOT IN (SELECT id FROM created)
UNION ALL
SELECT 'account', l.account_id::text, 'lead', l.id FROM leads l
    WHERE l.org_id = $1 AND l.account_id IN (SELECT id FROM created) AND l.id <> $2
UNION ALL
SELECT 'contact', l.contact_id::text, 'lead', l.id FROM leads l
    WHERE l.org_id = $1 AND l.contact_id IN (SELECT id FROM created) AND l.id <> $2
UNION ALL
SELECT 'opportunity', x::text, 'lead', l.id FROM leads l, unnest(l.opportunity_ids) x
    WHERE l.org_id = $1 AND l.opportunity_ids && ARRAY(SELECT id FROM created) AND l.id <> $2
        AND x IN (SELECT id FROM created)
UNION ALL
SELECT 'account', n.account_id::text, 'note', n.id::text FROM notes n
    WHERE n.org_id = $1 AND n.account_id IN (SELECT id FROM created) AND n.lead_id <> $2
UNION ALL
SELECT 'contact', n.contact_id::text, 'note', n.id::text FROM notes n
    WHERE n.org_id = $1 AND n.contact_id IN (SELECT id FROM created) AND n.lead_id <> $2
UNION ALL
SELECT 'opportunity', n.opportunity_id::text, 'note', n.id::text FROM notes n
    WHERE n.org_id = $1 AND n.opportunity_id IN (SELECT id FROM created) AND n.lead_id <> $2
UNION ALL
SELECT 'account', a.account_id::text, 'attachment', a.id::text FROM attachments a
    WHERE a.org_id = $1 AND a.account_id IN (SELECT id FROM created) AND a.lead_id <> $2
UNION ALL
SELECT 'contact', a.contact_id::text, 'attachment', a.id::text FROM attachments a
    WHERE a.org_id = $1 AND a.contact_id IN (SELECT id FROM created) AND a.lead_id <> $2
UNION ALL
SELECT 'opportunity', a.opportunity_id::text, 'attachment', a.id::text FROM attachments a
    WHERE a.org_id = $1 AND a.opportunity_id IN (SELECT id FROM created) AND a.lead_id <> $2
ORDER BY 1, 2, 3, 4
