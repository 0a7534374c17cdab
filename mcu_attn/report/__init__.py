"""Reports for people: the self-contained HTML page of a build or a sweep, and its figures."""
