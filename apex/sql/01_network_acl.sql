--------------------------------------------------------------------------------------------------
-- 01_network_acl.sql: let the APEX engine connect to the gateway (ORA-24247 otherwise).
--
-- Purpose:       appends host ACEs with DBMS_NETWORK_ACL_ADMIN.APPEND_HOST_ACE:
--                * self-managed database: connect and http on the gateway port, and resolve,
--                  for the APEX engine schema (APEX_WEB_SERVICE and REST Data Sources call
--                  from there); the same for the parsing schema only if its own code calls
--                  UTL_HTTP (UTL_HTTP runs with the caller's rights);
--                * ADB: nothing for a public gateway (the ACL is preconfigured); for a gateway
--                  on a private IP address the same ACE with private_target set.
--                Existing ACEs are left alone, so running it again adds nothing.
-- Prerequisites: SYS or another user with EXECUTE on DBMS_NETWORK_ACL_ADMIN (ADMIN on ADB);
--                the variables of install.sql.
-- How to run:    from install.sql (@@01_network_acl.sql).
--------------------------------------------------------------------------------------------------
prompt
prompt == 01 network ACL
declare
   co_host constant varchar2(255 char) := lower('&ml_host');
   co_port constant pls_integer        := &ml_port;

   function has_ace(
      in_principal in varchar2,
      in_privilege in varchar2
   ) return boolean is
      l_count pls_integer;
   begin
      select count(*)
        into l_count
        from dba_host_aces
       where lower(host) = co_host
         and principal = in_principal
         and privilege = upper(in_privilege)
         and (in_privilege = 'resolve' or co_port between lower_port and upper_port);
      return l_count > 0;
   end has_ace;

   procedure grant_to(in_principal in varchar2) is
   begin
      <<port_privileges>>
      for l_privilege in (select column_value as name from table(sys.odcivarchar2list('connect', 'http')))
      loop
         if not has_ace(in_principal, l_privilege.name) then
            dbms_network_acl_admin.append_host_ace(
               host       => co_host,
               lower_port => co_port,
               upper_port => co_port,
               ace        => xs$ace_type(
                                privilege_list => xs$name_list(l_privilege.name),
                                principal_name => in_principal,
                                principal_type => xs_acl.ptype_db
                             )
            );
            dbms_output.put_line(l_privilege.name || ' on ' || co_host || ':' || co_port
                                 || ' granted to ' || in_principal);
         end if;
      end loop port_privileges;
      if not has_ace(in_principal, 'resolve') then
         dbms_network_acl_admin.append_host_ace(
            host => co_host,
            ace  => xs$ace_type(
                       privilege_list => xs$name_list('resolve'),
                       principal_name => in_principal,
                       principal_type => xs_acl.ptype_db
                    )
         );
         dbms_output.put_line('resolve of ' || co_host || ' granted to ' || in_principal);
      end if;
   end grant_to;

   procedure grant_private_target(in_principal in varchar2) is
   begin
      -- private_target exists only on Autonomous Database, so the call is dynamic and this
      -- script compiles on every database.
      execute immediate q'[
         begin
            dbms_network_acl_admin.append_host_ace(
               host           => :host,
               lower_port     => :port,
               upper_port     => :port,
               ace            => xs$ace_type(
                                    privilege_list => xs$name_list('connect', 'http'),
                                    principal_name => :principal,
                                    principal_type => xs_acl.ptype_db
                                 ),
               private_target => true
            );
         end;]'
         using co_host, co_port, in_principal;
      dbms_output.put_line('private target ' || co_host || ':' || co_port || ' granted to '
                           || in_principal);
   end grant_private_target;
begin
   if upper('&db_target') = 'ADB' then
      if upper('&private_target') = 'Y' then
         if not has_ace(apex_application.g_flow_schema_owner, 'connect') then
            grant_private_target(apex_application.g_flow_schema_owner);
         end if;
      else
         dbms_output.put_line('ADB with a public gateway: the preconfigured ACL applies');
      end if;
   else
      grant_to(apex_application.g_flow_schema_owner);
      if upper('&acl_for_parsing_schema') = 'Y' then
         grant_to(upper('&parsing_schema'));
      end if;
   end if;
   commit;
end;
/
