"""Domain: principals, resources, versions; no SQL, no HTTP."""
