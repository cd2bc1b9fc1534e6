--------------------------------------------------------------------------------------------------
-- 03_web_credential.sql: the Web Credential ML_API_KEY that sends the API key.
--
-- Purpose:       creates (or updates) the workspace credential ML_API_KEY through
--                APEX_CREDENTIAL: type HTTP Header, header X-API-Key, valid only for the
--                gateway's own paths, so APEX refuses to send the key anywhere else. The key
--                is the one typed at the hidden prompt of install.sql; it is forgotten right
--                after (undefine) and never written to a file or the log.
-- Prerequisites: the variables of install.sql (ml_api_key included).
-- How to run:    from install.sql (@@03_web_credential.sql). To change only the key later,
--                run set_api_key.sql.
--------------------------------------------------------------------------------------------------
prompt
prompt == 03 web credential ML_API_KEY
declare
   co_static_id constant varchar2(30 char)  := 'ML_API_KEY';
   co_header    constant varchar2(30 char)  := 'X-API-Key';
   -- Scheme, host and port only: the paths are appended below.
   co_base      constant varchar2(400 char) := 'https' || '://' || lower('&ml_host')
                                               || case when &ml_port != 443 then ':' || &ml_port end;
   l_allowed_urls apex_t_varchar2;
   l_existing     pls_integer;
begin
   l_allowed_urls := apex_t_varchar2(co_base || '/invocations', co_base || '/model',
                                     co_base || '/openapi.json');
   apex_util.set_workspace(p_workspace => upper('&apex_workspace'));
   select count(*)
     into l_existing
     from apex_workspace_credentials
    where workspace = upper('&apex_workspace')
      and static_id = co_static_id;
   if l_existing = 0 then
      apex_credential.create_credential(
         p_credential_name      => 'ML gateway API key',
         p_credential_static_id => co_static_id,
         p_authentication_type  => apex_credential.c_type_http_header,
         p_allowed_urls         => l_allowed_urls,
         p_prompt_on_install    => true,
         p_credential_comment   => 'X-API-Key for the credit-risk ML gateway; see apex/README.md'
      );
      dbms_output.put_line('credential ' || co_static_id || ' created');
   else
      -- set_allowed_urls clears the secret unless it is passed again.
      apex_credential.set_allowed_urls(
         p_credential_static_id => co_static_id,
         p_allowed_urls         => l_allowed_urls,
         p_client_secret        => '&ml_api_key'
      );
      dbms_output.put_line('credential ' || co_static_id || ' updated');
   end if;
   apex_credential.set_persistent_credentials(
      p_credential_static_id => co_static_id,
      p_key                  => co_header,
      p_value                => '&ml_api_key'
   );
   commit;
end;
/
undefine ml_api_key
