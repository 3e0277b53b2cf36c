"""Storage: the SQLite database, atomic files and locks, and `ragbot doctor` / backup / restore."""
