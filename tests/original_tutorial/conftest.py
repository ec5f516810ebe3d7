"""The original ndustria's tutorial scripts: fixtures run by tests/test_original_api.py, never collected
(``rerun_test.py`` and ``iterations_test.py`` match pytest's ``*_test.py`` and would run on import)."""

collect_ignore_glob = ["*.py"]
