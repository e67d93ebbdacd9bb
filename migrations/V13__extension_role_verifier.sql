-- The SCRAM verifier Solobase last gave each extension's role, so that a start can tell (when
-- it may read pg_authid) whether the role's password is still the one Solobase set.
ALTER TABLE solobase.extension_roles ADD COLUMN verifier text;
