import os

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/unit/" in str(item.fspath):
            item.add_marker(pytest.mark.unit)
    # The PL/SQL parse tests need ../shared/tools/plsql-check: they run under
    # `make plsql-check`, which sets PLSQL_CHECK; elsewhere they are deselected (and counted).
    if not os.environ.get("PLSQL_CHECK"):
        deselected = [item for item in items if item.get_closest_marker("plsql")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("plsql")]
