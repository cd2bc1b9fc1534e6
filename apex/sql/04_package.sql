--------------------------------------------------------------------------------------------------
-- 04_package.sql: compile credit_risk_api (rendered for the promoted model) and check it.
--
-- Purpose:       installs apex/generated/credit_risk_api.pks and .pkb in the parsing schema
--                and stops with the compiler's messages if either does not compile
--                (SQL*Plus reports compilation errors as a warning, not an error).
-- Prerequisites: 02_settings.sql has run (the package reads credit_risk_api_settings);
--                the files rendered by: make apex.
-- How to run:    from install.sql (@@04_package.sql); again after every make apex.
--------------------------------------------------------------------------------------------------
prompt
prompt == 04 package credit_risk_api
alter session set current_schema = &parsing_schema;

@@../generated/credit_risk_api.pks
@@../generated/credit_risk_api.pkb

select type, line, position, text
  from all_errors
 where owner = upper('&parsing_schema')
   and name = 'CREDIT_RISK_API'
 order by type, sequence;

declare
   l_errors pls_integer;
begin
   select count(*)
     into l_errors
     from all_errors
    where owner = upper('&parsing_schema')
      and name = 'CREDIT_RISK_API'
      and attribute = 'ERROR';
   if l_errors > 0 then
      raise_application_error(
         -20000,
         'credit_risk_api does not compile (' || l_errors || ' errors listed above)'
      );
   end if;
end;
/
