-- Undoing a qualification (lead.unqualify.requested) deletes the records it
-- created unless another row points at them. These indexes let it find those
-- rows, and let PostgreSQL check the foreign keys on delete, without scanning
-- an org's tables. Most rows have no such reference (an open lead, a note
-- still on its lead): the btree indexes are partial, so that they cost nothing for
-- them. opportunity_ids is an array, searched by a GIN index.

ALTER TABLE leads ADD COLUMN unqualified_at timestamptz;

CREATE INDEX leads_account ON leads (org_id, account_id) WHERE account_id IS NOT NULL;
CREATE INDEX leads_contact ON leads (org_id, contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX leads_opportunity_ids ON leads USING gin (opportunity_ids);

CREATE INDEX opportunities_account ON opportunities (org_id, account_id) WHERE account_id IS NOT NULL;
CREATE INDEX opportunities_contact ON opportunities (org_id, contact_id) WHERE contact_id IS NOT NULL;

CREATE INDEX notes_account ON notes (org_id, account_id) WHERE account_id IS NOT NULL;
CREATE INDEX notes_contact ON notes (org_id, contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX notes_opportunity ON notes (org_id, opportunity_id) WHERE opportunity_id IS NOT NULL;

CREATE INDEX attachments_account ON attachments (org_id, account_id) WHERE account_id IS NOT NULL;
CREATE INDEX attachments_contact ON attachments (org_id, contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX attachments_opportunity ON attachments (org_id, opportunity_id) WHERE opportunity_id IS NOT NULL;
