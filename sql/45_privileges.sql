-- Privileges, granted on purpose. Start from nothing, then open what is safe.
REVOKE ALL ON SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM PUBLIC;

-- Any role may call the encryption API: without keys handed in by the application it can
-- neither encrypt nor decrypt anything. Inlined functions are checked against the
-- caller's rights, so the internal helpers they call are granted too.
GRANT USAGE ON SCHEMA pgseal TO PUBLIC;
GRANT EXECUTE ON FUNCTION
  pgseal.use_keys(bytea),
  pgseal.encrypt_text(text, text, text), pgseal.encrypt_bytea(bytea, text, text),
  pgseal.decrypt_text(bytea, text), pgseal.decrypt_bytea(bytea, text),
  pgseal.key_version_of(bytea), pgseal.seal(bytea, text, bytea, bytea), pgseal._seal(bytea, bytea, bytea, bytea),
  pgseal._raise(text, text, text), pgseal._fail_key_state(integer), pgseal._fail_if_no_keys(),
  pgseal._fail_envelope(bytea, text, boolean, boolean), pgseal._fail_open(bytea, text), pgseal._fail_no_active_key(text),
  pgseal._context_bytes(text), pgseal._active_key(text), pgseal._mac_key_for(bytea), pgseal._enc_key_for(bytea),
  pgseal._hmac_sha256(bytea, bytea), pgseal._aes_cbc_encrypt(bytea, bytea, bytea),
  pgseal._aes_cbc_decrypt(bytea, bytea, bytea), pgseal._random_bytes(integer)
TO PUBLIC;

-- The key registry is not PUBLIC: wrapped keys are useless without the master key, but
-- who may read or change them is the owner's decision (README: "Privileges").
-- pgseal.add_key stays owner-only.
