"""The desk's pages, one module per group; each module's `setup(app)` adds its routes and its
entries of the navigation (docs/desk.md, "How to add a page")."""
