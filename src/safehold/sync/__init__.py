"""WebDAV collection synchronization (RFC 6578) and CalendarServer's getctag."""
