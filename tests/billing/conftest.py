# The lifecycle tests' world (simulator, live endpoint, test clock, Acme and its owner) for the
# other end-to-end billing tests.
from tests.billing.test_lifecycle import world  # noqa: F401
