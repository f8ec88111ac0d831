"""The credit ledger arrives here."""
