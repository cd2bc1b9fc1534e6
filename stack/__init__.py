"""Running the stack: the native runner behind `make up`, and the process helpers that the
native runner, the tests and the benchmark share (stack/README.md)."""
