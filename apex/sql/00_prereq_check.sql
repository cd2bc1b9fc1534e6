--------------------------------------------------------------------------------------------------
-- 00_prereq_check.sql: stop early when the answers or the database cannot work.
--
-- Purpose:       prints the APEX and database versions and the APEX engine schema; checks the
--                answers (target, host, port) and that the schema belongs to the workspace.
-- Prerequisites: the variables of install.sql (db_target, ml_host, ml_port, apex_workspace,
--                parsing_schema).
-- How to run:    from install.sql (@@00_prereq_check.sql).
--------------------------------------------------------------------------------------------------
prompt
prompt == 00 prerequisites
declare
   l_apex_version apex_release.version_no%type;
   l_apex_major   pls_integer;
   l_apex_minor   pls_integer;
   l_schemas      pls_integer;
begin
   select version_no
     into l_apex_version
     from apex_release;
   l_apex_major := to_number(regexp_substr(l_apex_version, '[0-9]+', 1, 1));
   l_apex_minor := to_number(regexp_substr(l_apex_version, '[0-9]+', 1, 2));
   dbms_output.put_line('APEX ' || l_apex_version || ', engine schema '
                        || apex_application.g_flow_schema_owner);
   dbms_output.put_line('Database ' || dbms_db_version.version || '.' || dbms_db_version.release);

   if l_apex_major * 100 + l_apex_minor < 2202 then
      raise_application_error(-20000, 'APEX ' || l_apex_version || ' is too old: 22.2 or later');
   end if;
   if dbms_db_version.version < 19 then
      raise_application_error(-20000, 'Oracle Database 19c or later is needed');
   end if;
   if upper('&db_target') not in ('SELF', 'ADB') then
      raise_application_error(-20000, 'answer SELF or ADB for the database, not "&db_target"');
   end if;
   if regexp_like('&ml_host', '[/:@ ]') or '&ml_host' is null then
      raise_application_error(
         -20000,
         'give the gateway host name only (e.g. ml.example.com), not "&ml_host"'
      );
   end if;
   if regexp_like('&ml_host', '^[0-9.]+$') then
      raise_application_error(
         -20000,
         'use the host name of the gateway, not an IP address: the certificate names the host '
         || '(ORA-24263), and Autonomous Database refuses IP addresses'
      );
   end if;
   if upper('&db_target') = 'ADB' and &ml_port != 443 then
      raise_application_error(-20000, 'APEX on Autonomous Database calls HTTPS on port 443 only');
   end if;

   select count(*)
     into l_schemas
     from apex_workspace_schemas
    where workspace_name = upper('&apex_workspace')
      and schema = upper('&parsing_schema');
   if l_schemas = 0 then
      raise_application_error(
         -20000,
         'schema &parsing_schema is not assigned to APEX workspace &apex_workspace; assign it in '
         || 'Administration Services, Manage Workspaces'
      );
   end if;
end;
/
