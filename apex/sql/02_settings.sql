--------------------------------------------------------------------------------------------------
-- 02_settings.sql: the one-row settings table credit_risk_api reads on every call.
--
-- Purpose:       creates credit_risk_api_settings in the parsing schema if it is missing and
--                writes the answers of install.sql into its single row (host, port,
--                credential, wallet path, certificate host name, timeout). No URL and no key
--                are stored here: the package adds the scheme, the key lives in the credential.
-- Prerequisites: the variables of install.sql; CREATE ANY TABLE (a DBA user).
-- How to run:    from install.sql (@@02_settings.sql). Change a value later with an UPDATE.
--------------------------------------------------------------------------------------------------
prompt
prompt == 02 settings
alter session set current_schema = &parsing_schema;

declare
   l_tables pls_integer;
begin
   select count(*)
     into l_tables
     from all_tables
    where owner = upper('&parsing_schema')
      and table_name = 'CREDIT_RISK_API_SETTINGS';
   if l_tables = 0 then
      execute immediate q'[
         create table credit_risk_api_settings (
            setting_id           number(1, 0)       default 1 not null,
            gateway_host         varchar2(255 char) not null,
            gateway_port         number(5, 0)       default 443 not null,
            credential_static_id varchar2(255 char) default 'ML_API_KEY' not null,
            wallet_path          varchar2(512 char),
            https_host           varchar2(255 char),
            transfer_timeout     number(4, 0)       default 20 not null,
            constraint credit_risk_api_settings_pk primary key (setting_id),
            constraint credit_risk_api_settings_one_ck check (setting_id = 1),
            constraint credit_risk_api_settings_port_ck check (gateway_port between 1 and 65535)
         )]';
      dbms_output.put_line('table credit_risk_api_settings created');
   end if;
end;
/

merge into credit_risk_api_settings target
using (
   select 1 as setting_id,
          lower('&ml_host') as gateway_host,
          &ml_port as gateway_port,
          'ML_API_KEY' as credential_static_id,
          '&wallet_path' as wallet_path,
          '&https_host' as https_host,
          &transfer_timeout as transfer_timeout
     from dual
) source
   on (target.setting_id = source.setting_id)
 when matched then
      update set target.gateway_host         = source.gateway_host,
                 target.gateway_port         = source.gateway_port,
                 target.credential_static_id = source.credential_static_id,
                 target.wallet_path          = source.wallet_path,
                 target.https_host           = source.https_host,
                 target.transfer_timeout     = source.transfer_timeout
 when not matched then
      insert (setting_id, gateway_host, gateway_port, credential_static_id, wallet_path,
              https_host, transfer_timeout)
      values (source.setting_id, source.gateway_host, source.gateway_port,
              source.credential_static_id, source.wallet_path, source.https_host,
              source.transfer_timeout);
commit;
