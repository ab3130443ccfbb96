"""Delta tables and the storage they live on: URIs, table contracts and data-quality measures."""
