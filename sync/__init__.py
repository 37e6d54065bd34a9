"""The sync protocol between phones and the server: pure functions over the database."""
