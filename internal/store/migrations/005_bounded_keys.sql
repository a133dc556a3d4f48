-- A normalized value may be 1,024 characters of up to four bytes each,
-- more than a btree entry holds (about 2,700 bytes): a lead with such a
-- company name could not be converted. The probe indexes hold the first
-- 512 characters of their key (or of the reversed value); a probe looks
-- the bounded key up in the index and compares the whole one on the rows
-- it finds (probe.go).

DROP INDEX accounts_name_key, accounts_name_norm_rev, accounts_website_key, accounts_website_norm_rev, accounts_phone_key, accounts_phone_norm_rev;
CREATE INDEX accounts_name_key ON accounts ((left(length(org_id)::text || ':' || org_id || name_norm, 512)) COLLATE "C") WHERE name_norm <> '';
CREATE INDEX accounts_name_norm_rev ON accounts (left(reverse(name_norm), 512), org_id) WHERE name_norm <> '';
CREATE INDEX accounts_website_key ON accounts ((left(length(org_id)::text || ':' || org_id || website_norm, 512)) COLLATE "C") WHERE website_norm <> '';
CREATE INDEX accounts_website_norm_rev ON accounts (left(reverse(website_norm), 512), org_id) WHERE website_norm <> '';
CREATE INDEX accounts_phone_key ON accounts ((left(length(org_id)::text || ':' || org_id || phone_norm, 512)) COLLATE "C") WHERE phone_norm <> '';
CREATE INDEX accounts_phone_norm_rev ON accounts (left(reverse(phone_norm), 512), org_id) WHERE phone_norm <> '';

DROP INDEX contacts_email_key, contacts_email_norm_rev, contacts_business_phone_key, contacts_business_phone_norm_rev, contacts_mobile_phone_key, contacts_mobile_phone_norm_rev, contacts_first_name_key, contacts_first_name_norm_rev, contacts_last_name_key, contacts_last_name_norm_rev;
CREATE INDEX contacts_email_key ON contacts ((left(length(org_id)::text || ':' || org_id || email_norm, 512)) COLLATE "C") WHERE email_norm <> '';
CREATE INDEX contacts_email_norm_rev ON contacts (left(reverse(email_norm), 512), org_id) WHERE email_norm <> '';
CREATE INDEX contacts_business_phone_key ON contacts ((left(length(org_id)::text || ':' || org_id || business_phone_norm, 512)) COLLATE "C") WHERE business_phone_norm <> '';
CREATE INDEX contacts_business_phone_norm_rev ON contacts (left(reverse(business_phone_norm), 512), org_id) WHERE business_phone_norm <> '';
CREATE INDEX contacts_mobile_phone_key ON contacts ((left(length(org_id)::text || ':' || org_id || mobile_phone_norm, 512)) COLLATE "C") WHERE mobile_phone_norm <> '';
CREATE INDEX contacts_mobile_phone_norm_rev ON contacts (left(reverse(mobile_phone_norm), 512), org_id) WHERE mobile_phone_norm <> '';
CREATE INDEX contacts_first_name_key ON contacts ((left(length(org_id)::text || ':' || org_id || first_name_norm, 512)) COLLATE "C") WHERE first_name_norm <> '';
CREATE INDEX contacts_first_name_norm_rev ON contacts (left(reverse(first_name_norm), 512), org_id) WHERE first_name_norm <> '';
CREATE INDEX contacts_last_name_key ON contacts ((left(length(org_id)::text || ':' || org_id || last_name_norm, 512)) COLLATE "C") WHERE last_name_norm <> '';
CREATE INDEX contacts_last_name_norm_rev ON contacts (left(reverse(last_name_norm), 512), org_id) WHERE last_name_norm <> '';
