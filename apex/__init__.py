"""The APEX integration kit: renders PL/SQL, REST Data Source notes and OpenAPI for the model."""
