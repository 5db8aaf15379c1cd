"""Service levels: what safehold promises (policy), what it saw (events and probe
samples), what that adds up to for a month (measurement), how it is told (report,
status page, metrics) and what is owed when it fell short (credits).

Everything time-based takes its clock as an argument, so that scripted outages are
tested without sleeping (STYLE 9)."""
