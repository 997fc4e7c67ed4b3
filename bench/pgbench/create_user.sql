-- The database work of one SCIM create, as gateway/scim/store.py::create does it:
-- the IdP's lookup (a new user: no match), the user row with its indexed
-- columns and SCIM document, the provisioning event (whose trigger NOTIFYs the
-- relay), one commit. pgbench -M prepared; TENANT is set with -D. pgbench reads
-- every :word as a variable, even inside a string, so the URNs spell ':' as \x3a.
\set n random(1, 1000000000)
BEGIN;
SELECT id FROM users
 WHERE tenant_id = CAST(:tenant AS uuid)
   AND lower(user_name) = lower('lookup' || CAST(:n AS text) || '@bench.example')
   AND deleted_at IS NULL;
INSERT INTO users (id, tenant_id, scim_id, user_name, external_id, email, email_values,
                   display_name, given_name, family_name, department, source, attributes)
SELECT gen_random_uuid(), tenant, gen_random_uuid(), name, ext, name, ARRAY[name],
       'Given Family', 'Given', 'Family', 'Engineering', 'okta',
       jsonb_build_object(
         'schemas', jsonb_build_array(E'urn\x3aietf\x3aparams\x3ascim\x3aschemas\x3acore\x3a2.0\x3aUser',
                                      E'urn\x3aietf\x3aparams\x3ascim\x3aschemas\x3aextension\x3aenterprise\x3a2.0\x3aUser'),
         'userName', name, 'externalId', ext, 'active', true,
         'name', jsonb_build_object('givenName', 'Given', 'familyName', 'Family'),
         'displayName', 'Given Family',
         'emails', jsonb_build_array(jsonb_build_object('primary', true, 'value', name, 'type', 'work')),
         E'urn\x3aietf\x3aparams\x3ascim\x3aschemas\x3aextension\x3aenterprise\x3a2.0\x3aUser',
           jsonb_build_object('department', 'Engineering', 'manager', jsonb_build_object('value', '00u0')))
  FROM (SELECT 'u' || gen_random_uuid() || '@bench.example' AS name,
               CAST(:tenant AS uuid) AS tenant, CAST('00u' || :n AS text) AS ext) AS fresh
RETURNING id AS user_id
\gset
INSERT INTO provisioning_events (tenant_id, user_id, kind, changes, actor_idp, request_id)
VALUES (CAST(:tenant AS uuid), CAST(:user_id AS uuid), 'user.created', '{"userName": [null, "x"]}', 'okta', 'bench');
END;
