"""iCalendar and vCard: validation, index extraction and query evaluation. Parsing
happens only to validate and to index; stored bytes are never rewritten (promise 3)."""
