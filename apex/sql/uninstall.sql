--------------------------------------------------------------------------------------------------
-- uninstall.sql: remove what install.sql created. Safe to run twice.
--
-- Purpose:       drops the package credit_risk_api and the table credit_risk_api_settings,
--                drops the Web Credential ML_API_KEY, and removes the host ACEs for the
--                gateway host from the APEX engine schema and the parsing schema (answer N
--                if other code of the instance calls the same host). Every step checks first
--                whether there is anything to remove.
-- Prerequisites: the same DBA user as for install.sql.
-- How to run:    cd apex/sql
--                sql admin@mydb @uninstall.sql
-- Log:           credit_risk_api_uninstall.log
--------------------------------------------------------------------------------------------------
whenever sqlerror exit failure rollback
whenever oserror exit failure rollback
set define on verify off echo off feedback on termout on
set serveroutput on size unlimited
spool credit_risk_api_uninstall.log

accept apex_workspace char prompt 'APEX workspace name: '
accept parsing_schema char prompt 'Parsing schema that owns the package: '
accept ml_host char prompt 'Gateway host name (as given to install.sql): '
accept remove_acl char default 'Y' prompt 'Remove the host ACEs for this host? Y/N [Y]: '

prompt == package and settings table
declare
   procedure drop_if_exists(
      in_type in varchar2,
      in_name in varchar2
   ) is
      l_count pls_integer;
   begin
      select count(*)
        into l_count
        from all_objects
       where owner = upper('&parsing_schema')
         and object_name = in_name
         and object_type = in_type;
      if l_count > 0 then
         execute immediate 'drop ' || in_type || ' '
                           || dbms_assert.enquote_name(upper('&parsing_schema')) || '.'
                           || dbms_assert.enquote_name(in_name);
         dbms_output.put_line(lower(in_type) || ' ' || in_name || ' dropped');
      end if;
   end drop_if_exists;
begin
   drop_if_exists(in_type => 'PACKAGE', in_name => 'CREDIT_RISK_API');
   drop_if_exists(in_type => 'TABLE', in_name => 'CREDIT_RISK_API_SETTINGS');
end;
/

prompt == web credential
declare
   l_count pls_integer;
begin
   apex_util.set_workspace(p_workspace => upper('&apex_workspace'));
   select count(*)
     into l_count
     from apex_workspace_credentials
    where workspace = upper('&apex_workspace')
      and static_id = 'ML_API_KEY';
   if l_count > 0 then
      apex_credential.drop_credential(p_credential_static_id => 'ML_API_KEY');
      dbms_output.put_line('credential ML_API_KEY dropped');
   end if;
   commit;
end;
/

prompt == network ACL
begin
   if upper('&remove_acl') = 'Y' then
      <<aces>>
      for l_ace in (
         select host, lower_port, upper_port, principal, privilege
           from dba_host_aces
          where lower(host) = lower('&ml_host')
            and principal in (apex_application.g_flow_schema_owner, upper('&parsing_schema'))
            and privilege in ('CONNECT', 'HTTP', 'RESOLVE')
      )
      loop
         dbms_network_acl_admin.remove_host_ace(
            host             => l_ace.host,
            lower_port       => l_ace.lower_port,
            upper_port       => l_ace.upper_port,
            ace              => xs$ace_type(
                                   privilege_list => xs$name_list(lower(l_ace.privilege)),
                                   principal_name => l_ace.principal,
                                   principal_type => xs_acl.ptype_db
                                ),
            remove_empty_acl => true
         );
         dbms_output.put_line(lower(l_ace.privilege) || ' for ' || l_ace.principal || ' removed');
      end loop aces;
      commit;
   end if;
end;
/

prompt == what is left (expect no rows)
select object_name, object_type
  from all_objects
 where owner = upper('&parsing_schema')
   and object_name in ('CREDIT_RISK_API', 'CREDIT_RISK_API_SETTINGS');

spool off
exit success
