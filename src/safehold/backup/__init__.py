"""Continuous, encrypted, verified off-machine copies (DESIGN "Backups and replicas").

File names are the design: replica_client (object stores), crypto (the key and
the recovery kit), segment (change-log ranges), manifest (the replica's high-water
mark), snapshot, shipper (tails the log), restore, drill."""
