--------------------------------------------------------------------------------------------------
-- set_api_key.sql: put a new gateway API key into the Web Credential ML_API_KEY (rotation).
--
-- Purpose:       replaces the secret of ML_API_KEY; nothing else changes. Use it when the
--                gateway answers 401 or when the key is rotated.
-- Prerequisites: install.sql has run; a user that may administer the workspace (a DBA user,
--                or the workspace schema).
-- How to run:    cd apex/sql
--                sql admin@mydb @set_api_key.sql
--                The key is typed at a hidden prompt, never written to a file or the log.
-- Log:           credit_risk_api_set_key.log
--------------------------------------------------------------------------------------------------
whenever sqlerror exit failure rollback
whenever oserror exit failure rollback
set define on verify off echo off feedback on termout on
set serveroutput on size unlimited
spool credit_risk_api_set_key.log

accept apex_workspace char prompt 'APEX workspace name: '
accept ml_api_key char hide prompt 'New API key (not shown, not logged): '

begin
   apex_util.set_workspace(p_workspace => upper('&apex_workspace'));
   apex_credential.set_persistent_credentials(
      p_credential_static_id => 'ML_API_KEY',
      p_key                  => 'X-API-Key',
      p_value                => '&ml_api_key'
   );
   commit;
end;
/
undefine ml_api_key

select name, static_id
  from apex_workspace_credentials
 where workspace = upper('&apex_workspace')
   and static_id = 'ML_API_KEY';

spool off
exit success
