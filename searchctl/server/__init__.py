"""`searchctl serve`: the search library over HTTP, and a web page (app.create_app)."""
