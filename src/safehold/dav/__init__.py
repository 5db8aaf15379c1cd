"""WebDAV (RFC 4918) protocol layer. Knows nothing about storage: it talks to a
``backend.DavBackend`` that http/davbackend.py implements on top of core."""
