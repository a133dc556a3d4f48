-- The probe indexes that the default duplicate rules do not use are built
-- when an org's rules need them (store.ensureProbeIndexes, on settings put
-- and after migrations), not for every org: with a million accounts and
-- contacts, keeping them was a fifth of the cost of a conversion. The
-- default rules compare accounts by name and website and contacts by email
-- and phone, exactly; their key indexes stay.
DROP INDEX accounts_name_norm_rev, accounts_website_norm_rev, accounts_phone_norm_rev, accounts_phone_key;
DROP INDEX contacts_email_norm_rev, contacts_business_phone_norm_rev, contacts_mobile_phone_norm_rev,
    contacts_first_name_norm_rev, contacts_last_name_norm_rev, contacts_first_name_key, contacts_last_name_key;
