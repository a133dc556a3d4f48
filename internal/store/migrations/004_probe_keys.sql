-- A duplicate probe looks a value up in its org by one key: the org's
-- length, the org and the normalized value, as one string
-- (probeKey in probe.go), so that one index, and only that one, can answer
-- it. leadflow's statements run on generic plans that PostgreSQL makes
-- once per connection, often while an org's tables are still empty; with
-- (value, org_id) indexes, such a plan could as well take any index that
-- holds org_id and walk the org for every probe, and keep doing so. The
-- length makes the key unambiguous whatever the org's id holds. Prefix
-- (first_n) probes use the same index with LIKE; suffix (last_n) probes
-- keep the reverse() indexes.

DROP INDEX accounts_name_norm, accounts_website_norm, accounts_phone_norm;
CREATE INDEX accounts_name_key ON accounts ((length(org_id)::text || ':' || org_id || name_norm) COLLATE "C") WHERE name_norm <> '';
CREATE INDEX accounts_website_key ON accounts ((length(org_id)::text || ':' || org_id || website_norm) COLLATE "C") WHERE website_norm <> '';
CREATE INDEX accounts_phone_key ON accounts ((length(org_id)::text || ':' || org_id || phone_norm) COLLATE "C") WHERE phone_norm <> '';

DROP INDEX contacts_email_norm, contacts_business_phone_norm, contacts_mobile_phone_norm,
    contacts_first_name_norm, contacts_last_name_norm;
CREATE INDEX contacts_email_key ON contacts ((length(org_id)::text || ':' || org_id || email_norm) COLLATE "C") WHERE email_norm <> '';
CREATE INDEX contacts_business_phone_key ON contacts ((length(org_id)::text || ':' || org_id || business_phone_norm) COLLATE "C") WHERE business_phone_norm <> '';
CREATE INDEX contacts_mobile_phone_key ON contacts ((length(org_id)::text || ':' || org_id || mobile_phone_norm) COLLATE "C") WHERE mobile_phone_norm <> '';
CREATE INDEX contacts_first_name_key ON contacts ((length(org_id)::text || ':' || org_id || first_name_norm) COLLATE "C") WHERE first_name_norm <> '';
CREATE INDEX contacts_last_name_key ON contacts ((length(org_id)::text || ':' || org_id || last_name_norm) COLLATE "C") WHERE last_name_norm <> '';
