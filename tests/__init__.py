"""The test suite (a package, so modules share helpers through `tests.helpers` and `tests.tiny`)."""
