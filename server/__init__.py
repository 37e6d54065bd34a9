"""FieldLedger (走访台账): the web app."""
