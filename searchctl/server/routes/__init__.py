"""One router per resource: system (health, metrics, collections), collections (search,
recommend, facets), products (payload, photo), page (the web page)."""
