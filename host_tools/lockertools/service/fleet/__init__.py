"""The fleet's records in the database, by what they are about (fleet_db gathers them for callers)."""
