"""The test suite, a package: test modules import shared helpers as tests.helpers (see there)."""
