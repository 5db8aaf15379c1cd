"""The upgrade gate: backup -> verify -> migrate -> check -> or restore (DESIGN promise 7).

  gate       is there a verified backup taken moments ago? (and ``--backup-now``)
  preserve   the pre-upgrade snapshot pinned on every replica, the local SQLite copy
  checks     the invariants compared across the migration (counts, content digests)
  runner     the marker, the one-transaction migration, resume after a crash, restore
"""
