"""The online path: the snapshot a model server loads and the request-time features built from it."""
