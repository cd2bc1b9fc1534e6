--------------------------------------------------------------------------------------------------
-- install.sql: set up an APEX workspace to score with the ML gateway (credit-risk model).
--
-- Purpose:       network ACL (self-managed database, or a private gateway on ADB), the settings
--                row, the Web Credential ML_API_KEY (HTTP Header X-API-Key) and the package
--                credit_risk_api; ends with a query that shows what was installed.
-- Prerequisites: APEX 22.2 or later (written against 24.2), Oracle Database 19c or later.
--                Run as a DBA user: SYS or SYSTEM on a self-managed database, ADMIN on ADB.
--                The parsing schema is assigned to the APEX workspace.
--                Self-managed database: a wallet with the gateway's CA chain, or the
--                system: store (see apex/README.md, section Wallet).
--                The package files in apex/generated/ (render them with: make apex).
-- How to run:    cd apex/sql
--                sql admin@mydb @install.sql        (SQLcl; or sqlplus)
--                Answer the prompts. The API key is typed in, not shown and not logged.
--                Safe to run again: it updates what is there.
-- Log:           credit_risk_api_install.log in the current folder.
--------------------------------------------------------------------------------------------------
whenever sqlerror exit failure rollback
whenever oserror exit failure rollback
set define on verify off echo off feedback on termout on
set serveroutput on size unlimited
set linesize 200 pagesize 100 trimspool on
spool credit_risk_api_install.log

prompt
prompt Credit-risk scoring for APEX: install
prompt
accept db_target char default 'SELF' -
   prompt 'Database: SELF (self-managed) or ADB (Autonomous Database) [SELF]: '
accept ml_host char -
   prompt 'Gateway host name, without scheme or path (e.g. ml.example.com): '
accept ml_port number default 443 -
   prompt 'Gateway HTTPS port [443]: '
accept apex_workspace char -
   prompt 'APEX workspace name: '
accept parsing_schema char -
   prompt 'Parsing schema of the application (owns the package): '
accept acl_for_parsing_schema char default 'N' -
   prompt 'Self-managed only: does code of the parsing schema call UTL_HTTP itself? Y/N [N]: '
accept private_target char default 'N' -
   prompt 'ADB only: is the gateway on a private IP address in your VCN? Y/N [N]: '
accept wallet_path char default '' -
   prompt 'Wallet path: empty = APEX instance wallet, system: or file:/dir [empty]: '
accept https_host char default '' -
   prompt 'Certificate host name if it differs from the host name above [empty]: '
accept transfer_timeout number default 20 -
   prompt 'Seconds to wait for an answer [20]: '
accept ml_api_key char hide -
   prompt 'API key for the gateway (not shown, not logged): '

@@00_prereq_check.sql
@@01_network_acl.sql
@@02_settings.sql
@@03_web_credential.sql
@@04_package.sql
@@05_verify.sql

spool off
exit success
