"""The model server and the native stack runner."""
