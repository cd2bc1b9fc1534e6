--------------------------------------------------------------------------------------------------
-- 05_verify.sql: show what was installed, and fail if a piece is missing.
--
-- Purpose:       lists the package and table with their status, the host ACEs for the
--                gateway, the Web Credential and the settings row (never the key).
-- Prerequisites: the variables of install.sql.
-- How to run:    from install.sql (@@05_verify.sql), or alone after defining parsing_schema,
--                apex_workspace and ml_host.
--------------------------------------------------------------------------------------------------
prompt
prompt == 05 verify
column object_name format a30
column principal format a30
column host format a40

select object_name, object_type, status
  from all_objects
 where owner = upper('&parsing_schema')
   and object_name in ('CREDIT_RISK_API', 'CREDIT_RISK_API_SETTINGS')
 order by object_name, object_type;

select host, lower_port, upper_port, principal, privilege
  from dba_host_aces
 where lower(host) = lower('&ml_host')
 order by principal, privilege;

select name, static_id
  from apex_workspace_credentials
 where workspace = upper('&apex_workspace')
   and static_id = 'ML_API_KEY';

select gateway_host, gateway_port, credential_static_id, wallet_path, https_host,
       transfer_timeout
  from credit_risk_api_settings;

declare
   l_valid       pls_integer;
   l_credentials pls_integer;
begin
   select count(*)
     into l_valid
     from all_objects
    where owner = upper('&parsing_schema')
      and object_name = 'CREDIT_RISK_API'
      and object_type in ('PACKAGE', 'PACKAGE BODY')
      and status = 'VALID';
   select count(*)
     into l_credentials
     from apex_workspace_credentials
    where workspace = upper('&apex_workspace')
      and static_id = 'ML_API_KEY';
   if l_valid != 2 or l_credentials != 1 then
      raise_application_error(
         -20000,
         'install incomplete: valid package parts ' || l_valid || ' of 2, credentials '
         || l_credentials || ' of 1'
      );
   end if;
   dbms_output.put_line('credit_risk_api installed; score a test row as in apex/README.md');
end;
/
