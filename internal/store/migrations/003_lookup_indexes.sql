-- Duplicate probes look records up by (org_id, normalized value); foreign
-- keys by (org_id, id). While every index led with org_id, a plan that
-- PostgreSQL cached while a table was small could take any of them for either
-- lookup and then walk the whole org. Leading with the value (or the account)
-- leaves the primary key the only index with org_id first, so that a
-- foreign-key check can only be a primary-key lookup, and a probe finds its
-- value's index by its first column. Empty values are never looked up: left
-- out of the indexes, they cost nothing to write, and the many records that
-- lack a value (no mobile phone, say) do not pile up on one index page that
-- every insert and every lookup of that column then contends for.

DROP INDEX accounts_name_norm, accounts_website_norm, accounts_phone_norm,
    accounts_name_norm_rev, accounts_website_norm_rev, accounts_phone_norm_rev;
CREATE INDEX accounts_name_norm ON accounts (name_norm, org_id) WHERE name_norm <> '';
CREATE INDEX accounts_website_norm ON accounts (website_norm, org_id) WHERE website_norm <> '';
CREATE INDEX accounts_phone_norm ON accounts (phone_norm, org_id) WHERE phone_norm <> '';
CREATE INDEX accounts_name_norm_rev ON accounts (reverse(name_norm), org_id) WHERE name_norm <> '';
CREATE INDEX accounts_website_norm_rev ON accounts (reverse(website_norm), org_id) WHERE website_norm <> '';
CREATE INDEX accounts_phone_norm_rev ON accounts (reverse(phone_norm), org_id) WHERE phone_norm <> '';

DROP INDEX contacts_account, contacts_email_norm, contacts_business_phone_norm,
    contacts_mobile_phone_norm, contacts_first_name_norm, contacts_last_name_norm,
    contacts_email_norm_rev, contacts_business_phone_norm_rev, contacts_mobile_phone_norm_rev,
    contacts_first_name_norm_rev, contacts_last_name_norm_rev;
CREATE INDEX contacts_account ON contacts (account_id, org_id) WHERE account_id IS NOT NULL;
CREATE INDEX contacts_email_norm ON contacts (email_norm, org_id) WHERE email_norm <> '';
CREATE INDEX contacts_business_phone_norm ON contacts (business_phone_norm, org_id) WHERE business_phone_norm <> '';
CREATE INDEX contacts_mobile_phone_norm ON contacts (mobile_phone_norm, org_id) WHERE mobile_phone_norm <> '';
CREATE INDEX contacts_first_name_norm ON contacts (first_name_norm, org_id) WHERE first_name_norm <> '';
CREATE INDEX contacts_last_name_norm ON contacts (last_name_norm, org_id) WHERE last_name_norm <> '';
CREATE INDEX contacts_email_norm_rev ON contacts (reverse(email_norm), org_id) WHERE email_norm <> '';
CREATE INDEX contacts_business_phone_norm_rev ON contacts (reverse(business_phone_norm), org_id) WHERE business_phone_norm <> '';
CREATE INDEX contacts_mobile_phone_norm_rev ON contacts (reverse(mobile_phone_norm), org_id) WHERE mobile_phone_norm <> '';
CREATE INDEX contacts_first_name_norm_rev ON contacts (reverse(first_name_norm), org_id) WHERE first_name_norm <> '';
CREATE INDEX contacts_last_name_norm_rev ON contacts (reverse(last_name_norm), org_id) WHERE last_name_norm <> '';
